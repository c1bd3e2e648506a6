"""A clinician in a real headless Chromium: sign in, find a patient, open her record."""

import os

import pytest
from playwright.sync_api import expect, sync_playwright
from django.db import connections
from pytest_django.live_server_helper import LiveServer

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.fixture
def live_server(transactional_db):
    """A server per test, stopped before the test database goes: its threads hold no connection after."""
    server = LiveServer("localhost")
    yield server
    server.stop()


@pytest.fixture
def browser_page(monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        yield page
        browser.close()
        # Connections opened while Playwright's event loop ran belong to that context: close them here.
        connections.close_all()


@pytest.mark.browser
def test_a_clinician_signs_in_searches_and_opens_a_patient(browser_page, live_server, clinician, imported_patient, foreign_patient):
    page = browser_page
    page.goto(live_server.url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.get_by_label("Username").fill("dr-north")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Patients")).to_be_visible()
    expect(page.locator("table.patients tbody tr")).to_have_count(1)  # South Clinic's patient is not listed

    page.get_by_label("Search by name or patient ID").fill("zzz")
    expect(page.get_by_text("No patients match")).to_be_visible()
    page.get_by_label("Search by name or patient ID").fill("Riv")
    expect(page.locator("table.patients tbody tr")).to_have_count(1)
    assert "q=Riv" in page.url  # the search is in the address bar, so it can be shared and reloaded

    page.get_by_label("Pregnancy").select_option("yes")  # her pregnancy in the record ended long ago
    expect(page.get_by_text("No patients match")).to_be_visible()
    page.get_by_label("Pregnancy").select_option("")
    page.get_by_role("link", name="Rivera, Ana Lucia").click()
    expect(page.get_by_role("heading", name="Ana Lucia Rivera")).to_be_visible()
    expect(page.get_by_text("128/82 mmHg")).to_be_visible()


@pytest.mark.browser
def test_a_wrong_password_is_refused_with_a_message(browser_page, live_server, clinician):
    page = browser_page
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username").fill("dr-north")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")


def test_chromium_is_installed_for_browser_tests():
    assert os.path.exists(CHROMIUM), "install Debian's chromium: make test does it when run as root"
