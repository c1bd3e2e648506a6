"""A clinician in a real headless Chromium: sign in, find a patient, open her record."""

import os
import re

import pytest
from django.db import connections
from playwright.sync_api import expect, sync_playwright
from pytest_django.live_server_helper import LiveServer

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


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
def test_a_clinician_signs_in_searches_and_opens_a_patient(
    browser_page, live_server, clinician, imported_patient, foreign_patient
):
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


def sign_in(page, live_server, username):
    page.goto(live_server.url + "/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()


@pytest.mark.browser
def test_a_curator_watches_a_refinement_run_progress_live_and_then_sees_its_curve(
    browser_page, live_server, curator, organisation
):
    from patients.models import JobStatus
    from prompting.models import RefinementRun

    run = RefinementRun.objects.create(
        organisation=organisation,
        version=1,
        status=JobStatus.RUNNING,
        progress=30,
        step=1,
        message="Step 1/3: mean reward 0.180",
        config={"steps": 3, "num_generations": 4, "target_endpoint": "smollm2-local", "device": "cpu"},
        curve=[{"step": 1, "reward_mean": 0.18, "reward_std": 0.02, "accepted_share": 0.5, "seconds": 90.0}],
    )
    page = browser_page
    sign_in(page, live_server, "curator-north")
    page.get_by_role("link", name="Refinement").click()
    page.get_by_role("link", name="Run 1").click()
    bar = page.get_by_role("progressbar", name="Run progress")
    expect(bar).to_have_attribute("aria-valuenow", "30")
    expect(page.get_by_role("button", name="Cancel run")).to_be_visible()

    # The worker moves on; the page follows without a reload.
    RefinementRun.objects.filter(pk=run.pk).update(
        progress=60,
        step=2,
        message="Step 2/3: mean reward 0.210",
        curve=run.curve
        + [{"step": 2, "reward_mean": 0.21, "reward_std": 0.03, "accepted_share": 0.75, "seconds": 88.0}],
    )
    expect(bar).to_have_attribute("aria-valuenow", "60", timeout=10_000)
    expect(page.get_by_text("Step 2/3: mean reward 0.210")).to_be_visible()

    RefinementRun.objects.filter(pk=run.pk).update(
        status=JobStatus.DONE,
        progress=100,
        step=3,
        message="Validation on 2 examples: initial 0.150, refined 0.190",
        reward_initial=0.15,
        reward_refined=0.19,
        accepted_share=1.0,
        seconds_per_step=89.0,
        checkpoint="models/refiner/x",
        curve=run.curve
        + [
            {"step": 2, "reward_mean": 0.21, "reward_std": 0.03, "accepted_share": 0.75, "seconds": 88.0},
            {"step": 3, "reward_mean": 0.24, "reward_std": 0.03, "accepted_share": 1.0, "seconds": 89.0},
        ],
    )
    expect(page.get_by_role("button", name="Promote this policy")).to_be_visible(timeout=10_000)
    chart = page.get_by_role("img", name="Reward per step, run 1")
    expect(chart).to_be_visible()
    expect(chart.locator("circle")).to_have_count(3)
    page.screenshot(path=str(live_server_screenshot_dir() / "refinement-run-done.png"), full_page=True)


@pytest.mark.browser
def test_a_clinician_watches_an_evaluation_finish_and_reads_its_table_and_plots(
    browser_page, live_server, clinician, organisation
):
    from patients.models import JobStatus
    from prompting.models import EvaluationRun
    from prompting.pmlm.evaluation import VARIANT_LABELS, VARIANTS, Scored, summarise_scores

    run = EvaluationRun.objects.create(
        organisation=organisation,
        status=JobStatus.RUNNING,
        progress=40,
        message="40/100: pmlm, sources on, smollm2-local",
        config={
            "endpoints": ["smollm2-local"],
            "retrieval": [True, False],
            "variants": list(VARIANTS),
            "seed": 7,
            "share": 0.25,
            "resamples": 200,
            "judge": None,
        },
    )
    page = browser_page
    sign_in(page, live_server, "dr-north")
    page.get_by_role("link", name="Evaluations").click()
    page.get_by_role("link", name=f"Evaluation {run.pk}").click()
    bar = page.get_by_role("progressbar", name="Evaluation progress")
    expect(bar).to_have_attribute("aria-valuenow", "40")
    expect(page.get_by_role("button", name="Cancel evaluation")).to_have_count(0)  # clinicians watch; curators cancel

    scored = [
        Scored(
            example=f"e{n}",
            patient=f"p{n}",
            variant=variant,
            rag=rag,
            endpoint="smollm2-local",
            metrics={"closeness": 0.2 + 0.02 * v + 0.01 * (n % 3) + (0.01 if rag else 0), "words": 120 + n},
        )
        for n in range(6)
        for v, variant in enumerate(VARIANTS)
        for rag in (True, False)
    ]
    EvaluationRun.objects.filter(pk=run.pk).update(
        status=JobStatus.DONE,
        progress=100,
        rows=summarise_scores(scored, resamples=200),
        examples=6,
        patients=6,
        message="60 answers on 6 encounters of 6 held-out patients",
    )
    table = page.get_by_role("table")
    expect(table).to_be_visible(timeout=10_000)
    expect(table.get_by_role("row")).to_have_count(1 + 2 * len(VARIANTS))  # a header and each variant × sources on/off
    expect(page.get_by_role("row", name=VARIANT_LABELS["pmlm_rl"]).first).to_be_visible()
    chart = page.get_by_role("img", name="Closeness to physician by prompt variant, smollm2-local")
    expect(chart.locator("circle")).to_have_count(2 * len(VARIANTS))
    expect(page.get_by_role("link", name="Download CSV")).to_be_visible()
    page.screenshot(path=str(live_server_screenshot_dir() / "evaluation-done.png"), full_page=True)


def live_server_screenshot_dir():
    from django.conf import settings

    path = settings.VAR_DIR / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.mark.browser
@pytest.mark.worker
def test_a_clinician_asks_watches_both_panels_fill_rates_and_picks_in_a_blinded_comparison(
    browser_page, live_server, organisation, cohort, tiny_policy
):
    """The whole consultation in Chromium, with a real Celery worker answering on the tiny model."""
    from patients.models import Role
    from prompting.models import ABJudgement, ClinicianRating, PromptTemplate
    from tests.conftest import make_member
    from tests.helpers import running_worker

    PromptTemplate.objects.get_or_create(
        version="pmlm-1", defaults={"active": True}
    )  # flushed with the data migrations
    make_member("demo-clinician", organisation, Role.CLINICIAN)
    page = browser_page
    with running_worker():
        sign_in(page, live_server, "demo-clinician")
        page.get_by_role("link", name="Testfamily1, Testgiven1").click()
        page.wait_for_load_state("domcontentloaded")  # the workspace's deferred script has run: quick questions work
        page.get_by_role("button", name="Next-visit plan").click()
        expect(page.get_by_role("textbox", name="Question")).to_have_value(re.compile("next visit"))
        page.get_by_role("textbox", name="Question").press("Control+Enter")

        prompt_panel, guidance_panel = page.locator('[data-panel="prompt"]'), page.locator('[data-panel="guidance"]')
        expect(prompt_panel).to_contain_text("Her record", timeout=60_000)
        expect(prompt_panel).to_contain_text("Hypertension")
        expect(guidance_panel.get_by_text("Done")).to_be_visible(timeout=90_000)
        expect(guidance_panel.locator(".guidance-text")).not_to_be_empty()
        expect(guidance_panel).to_contain_text("tiny-target")

        for scale in ("Accuracy", "Completeness", "Personalisation", "Safety", "Clarity"):
            guidance_panel.get_by_role("group", name=scale).get_by_role("radio", name="4").check()
        guidance_panel.get_by_role("group", name="Would you follow it?").get_by_role("radio", name="Yes").check()
        guidance_panel.get_by_role("button", name="Save rating").click()
        expect(guidance_panel.get_by_role("status").filter(has_text="Saved")).to_be_visible()
        assert ClinicianRating.objects.get().would_follow is True

        page.get_by_label("Blinded A/B comparison").select_option("retrieval")
        page.get_by_role("button", name="Blinded A/B").click()
        expect(page.get_by_role("heading", name="Answer A")).to_be_visible()
        expect(page.get_by_role("heading", name="Answer B")).to_be_visible()
        save_pick = page.get_by_role("button", name="Save my pick")
        expect(save_pick).to_be_enabled(timeout=120_000)
        page.get_by_role("radio", name="A is better").check()
        save_pick.click()
        expect(page.get_by_text("Your pick is saved")).to_be_visible()
        expect(page.get_by_text(re.compile(r"was (with|without) guidance sources")).first).to_be_visible()
        assert ABJudgement.objects.get().choice == "a"
        page.screenshot(path=str(live_server_screenshot_dir() / "workspace-ab.png"), full_page=True)


@pytest.mark.browser
def test_a_question_picked_in_her_workspace_has_its_guidance_sources_read_before_she_asks(
    browser_page, live_server, clinician, imported_patient, knowledge, settings, monkeypatch
):
    """The workspace posts the question's form when she pauses; the server queues a prefill of her prompt through
    the passages retrieved for it (by id, without her words), once."""
    from prompting.models import LLMEndpoint

    settings.PMLM_PREFILL_ON_OPEN = True
    LLMEndpoint.objects.update(is_default=False)
    LLMEndpoint.objects.create(name="local-default", kind="llamacpp", is_default=True)
    queued = []
    monkeypatch.setattr(
        "prompting.tasks.prefill_guidance_task.apply_async", lambda args, **options: queued.append((args, options))
    )
    page = browser_page
    sign_in(page, live_server, "dr-north")
    page.get_by_role("link", name="Rivera, Ana Lucia").click()
    page.wait_for_load_state("domcontentloaded")
    with page.expect_response(lambda response: "/guidance/prefill/" in response.url) as read_ahead:
        page.get_by_role("button", name="Next-visit plan").click()
    assert read_ahead.value.status == 202
    typed = [options["kwargs"] for args, options in queued if options["kwargs"]]
    assert len(typed) == 1 and typed[0]["chunk_ids"]
    assert "visit" not in repr(queued)
