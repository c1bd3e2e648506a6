"""A signed-in account is read once and kept for a few seconds; any change to who she is or what she may do is
seen on her next request."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patients.models import Role


def _account_reads(client, path="/patients/") -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(path).status_code in (200, 302, 403)
    return sum('FROM "auth_user"' in q["sql"] for q in queries)


@pytest.mark.django_db
def test_her_account_is_read_on_her_first_page_and_kept_for_the_next(client, clinician):
    client.force_login(clinician)
    assert _account_reads(client) == 1
    assert _account_reads(client) == 0


@pytest.mark.django_db
def test_a_deactivated_account_is_signed_out_on_its_next_request(client, clinician):
    client.force_login(clinician)
    client.get("/patients/")
    clinician.is_active = False
    clinician.save()
    response = client.get("/patients/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


@pytest.mark.django_db
def test_a_new_password_ends_sessions_signed_in_with_the_old_one(client, clinician):
    client.force_login(clinician)
    client.get("/patients/")
    clinician.set_password("a-brand-new-passphrase-42")
    clinician.save()
    assert client.get("/patients/").status_code == 302


@pytest.mark.django_db
def test_a_changed_role_shows_on_her_next_page(client, clinician):
    client.force_login(clinician)
    assert b"Refinement</a>" not in client.get("/patients/").content
    clinician.membership.role = Role.CURATOR
    clinician.membership.save()
    assert b"Refinement</a>" in client.get("/patients/").content


@pytest.mark.django_db
def test_moving_her_to_another_organisation_shows_her_only_its_patients(client, clinician, other_organisation):
    client.force_login(clinician)
    assert b"North Clinic" in client.get("/patients/").content
    clinician.membership.organisation = other_organisation
    clinician.membership.save()
    page = client.get("/patients/").content
    assert b"South Clinic" in page and b"North Clinic" not in page


@pytest.mark.django_db
def test_a_renamed_organisation_shows_its_new_name(client, clinician, organisation):
    client.force_login(clinician)
    client.get("/patients/")
    organisation.name = "North Clinic (Women's Health)"
    organisation.save()
    assert "North Clinic (Women&#x27;s Health)" in client.get("/patients/").content.decode()


@pytest.mark.django_db
def test_signing_in_does_not_drop_her_kept_account_for_the_last_sign_in_time_alone(client, clinician):
    client.force_login(clinician)
    client.get("/patients/")
    clinician.save(update_fields=["last_login"])
    assert _account_reads(client) == 0


@pytest.mark.django_db
def test_with_the_setting_at_zero_her_account_is_read_on_every_request(client, clinician, settings):
    settings.PMLM_ACCOUNT_CACHE_SECONDS = 0
    client.force_login(clinician)
    assert _account_reads(client) == 1
    assert _account_reads(client) == 1
