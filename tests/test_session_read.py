"""Her session is read by one plain statement (pmlm_site.sessions) and reads exactly as Django's own database store
reads it: a live session, an expired one, an unknown key, tampered data; signing out still ends it."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore as DjangoSessionStore
from django.contrib.sessions.models import Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from pmlm_site.sessions import SessionStore


def _both(key):
    """(what our store loads, its key after), (what Django's store loads, its key after), for the same key."""
    ours, django = SessionStore(key), DjangoSessionStore(key)
    return (ours.load(), ours.session_key), (django.load(), django.session_key)


def _saved(data, **expiry) -> str:
    store = SessionStore()
    store.update(data)
    store.create()
    if expiry:
        Session.objects.filter(session_key=store.session_key).update(expire_date=timezone.now() + timedelta(**expiry))
    return store.session_key


def test_the_clinic_uses_the_plain_statement_store():
    assert settings.SESSION_ENGINE == "pmlm_site.sessions"


@pytest.mark.django_db
def test_a_live_session_reads_as_django_reads_it_in_one_statement():
    key = _saved({"_auth_user_id": "7", "shift": "night"})
    with CaptureQueriesContext(connection) as queries:
        ours, django = _both(key)
    assert ours == django == ({"_auth_user_id": "7", "shift": "night"}, key)
    assert len(queries) == 2  # one statement each


@pytest.mark.django_db
def test_an_expired_session_reads_as_nothing_and_its_key_is_dropped_as_django_drops_it():
    key = _saved({"_auth_user_id": "7"}, seconds=-1)
    ours, django = _both(key)
    assert ours == django == ({}, None)


@pytest.mark.django_db
def test_a_session_expiring_later_today_is_still_read():
    key = _saved({"_auth_user_id": "7"}, minutes=1)
    ours, django = _both(key)
    assert ours == django == ({"_auth_user_id": "7"}, key)


@pytest.mark.django_db
def test_an_unknown_key_reads_as_nothing():
    ours, django = _both("k" * 32)
    assert ours == django == ({}, None)


@pytest.mark.django_db
def test_tampered_session_data_reads_as_nothing():
    key = _saved({"_auth_user_id": "7"})
    Session.objects.filter(session_key=key).update(session_data="forged:payload")
    ours, django = _both(key)
    assert ours[0] == django[0] == {}


@pytest.mark.django_db
def test_a_signed_in_clinician_sees_her_list_and_signing_out_ends_her_session(client, clinician):
    client.force_login(clinician)
    assert client.get("/patients/").status_code == 200
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert Session.objects.filter(session_key=key).exists()
    client.post("/accounts/logout/")
    assert not Session.objects.filter(session_key=key).exists()
    client.cookies[settings.SESSION_COOKIE_NAME] = key  # the old cookie, sent again, signs nobody in
    response = client.get("/patients/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
