"""Sign-in, the patient list and the patient page: each limited to the caller's organisation."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from patients.services import patient_import_bundle
from tests import fhir_builders as fb
from tests.factories import PatientFactory


def pregnant_bundle(pid, weeks, family):
    onset = (timezone.now() - timedelta(weeks=weeks, days=1)).date().isoformat()
    return fb.bundle(fb.patient(pid, family=family), fb.condition(f"{pid}-preg", pid, onset=onset))


@pytest.fixture
def cohort(organisation):
    for pid, weeks, family in [("t1", 8, "Early"), ("t2", 20, "Middle"), ("t3", 33, "Late")]:
        assert patient_import_bundle(
            organisation=organisation, bundle=pregnant_bundle(pid, weeks, family), source=pid
        ).ok
    ended = fb.bundle(
        fb.patient("done", family="Delivered"),
        fb.condition("done-preg", "done", onset="2023-01-01", abatement="2023-09-20"),
    )
    assert patient_import_bundle(organisation=organisation, bundle=ended, source="done").ok
    return organisation


def names(response):
    return [patient.family_name for patient in response.context["patients"]]


def test_the_home_page_sends_an_anonymous_visitor_to_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == reverse("login")


def test_pages_require_sign_in(client, imported_patient):
    for url in (reverse("patients:list"), reverse("workspace:patient", args=[imported_patient.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_a_clinician_signs_in_and_lands_on_the_patient_list(client, clinician):
    from tests.conftest import PASSWORD

    response = client.post(reverse("login"), {"username": "dr-north", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("patients:list")


def test_a_signed_in_page_reads_her_account_membership_and_organisation_in_one_query(client, clinician, cohort):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.conftest import PASSWORD

    client.post(reverse("login"), {"username": "dr-north", "password": PASSWORD})
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("patients:list"))
    assert response.status_code == 200
    account = [q["sql"] for q in queries.captured_queries if '"auth_user"' in q["sql"]]
    assert len(account) == 1
    assert '"patients_membership"' in account[0] and '"patients_organisation"' in account[0]
    assert not [q for q in queries.captured_queries if q["sql"].startswith('SELECT "patients_membership"')]
    assert response.context["membership"].organisation == clinician.membership.organisation


def test_the_list_shows_only_patients_of_her_organisation(client_for, clinician, imported_patient, foreign_patient):
    response = client_for(clinician).get(reverse("patients:list"))
    assert names(response) == ["Rivera"]
    assert response.context["patients"][0].pk == imported_patient.pk  # her row, read as named fields
    assert f'href="{reverse("workspace:patient", args=[imported_patient.pk])}"' in response.content.decode()


def test_search_by_name_or_external_id_answers_htmx_with_a_fragment(client_for, clinician, imported_patient, cohort):
    client = client_for(clinician)
    response = client.get(reverse("patients:list"), {"q": "rive"}, HTTP_HX_REQUEST="true")
    assert names(response) == ["Rivera"]
    assert b"<html" not in response.content
    assert "HX-Request" in response["Vary"]
    assert names(client.get(reverse("patients:list"), {"q": "pat-1"})) == ["Rivera"]
    assert names(client.get(reverse("patients:list"), {"q": "nobody-here"})) == []
    assert b"No patients match" in client.get(reverse("patients:list"), {"q": "nobody-here"}).content


def test_filters_find_pregnant_patients_by_trimester(client_for, clinician, cohort):
    client = client_for(clinician)
    url = reverse("patients:list")
    assert sorted(names(client.get(url, {"pregnant": "yes"}))) == ["Early", "Late", "Middle"]
    assert names(client.get(url, {"pregnant": "no"})) == ["Delivered"]
    assert names(client.get(url, {"trimester": "1"})) == ["Early"]
    assert names(client.get(url, {"trimester": "2"})) == ["Middle"]
    assert names(client.get(url, {"trimester": "3"})) == ["Late"]


def test_an_invalid_filter_is_ignored_not_an_error(client_for, clinician, cohort):
    response = client_for(clinician).get(reverse("patients:list"), {"trimester": "9", "pregnant": "maybe"})
    assert response.status_code == 200
    assert len(names(response)) == 4


def test_the_patient_page_shows_her_record(client_for, clinician, imported_patient):
    response = client_for(clinician).get(reverse("workspace:patient", args=[imported_patient.pk]))
    content = response.content.decode()
    assert response.status_code == 200
    for expected in (
        "Ana Lucia Rivera",
        "Prenatal visit",
        "Normal pregnancy",
        "71.5 kg",
        "128/82 mmHg",
        "Never smoked",
    ):
        assert expected in content


def test_her_record_and_the_patient_list_mark_patients_as_the_current_section_and_nothing_else(
    client_for, clinician, imported_patient
):
    client = client_for(clinician)
    for url in (reverse("patients:list"), reverse("workspace:patient", args=[imported_patient.pk])):
        header = client.get(url).content.decode().split("</nav>")[0]
        assert header.count('aria-current="page"') == 1
        assert re.search(r'aria-current="page"\s*>Patients</a>', header)
    jobs_header = client.get(reverse("jobs")).content.decode().split("</nav>")[0]
    assert not re.search(r'aria-current="page"\s*>Patients</a>', jobs_header)
    assert re.search(r'aria-current="page"\s*>Jobs</a>', jobs_header)


def test_a_colleague_with_another_role_may_read_the_record(client_for, curator, imported_patient):
    assert client_for(curator).get(reverse("workspace:patient", args=[imported_patient.pk])).status_code == 200


def test_an_outsider_gets_404_for_another_organisations_patient(client_for, outsider, imported_patient):
    response = client_for(outsider).get(reverse("workspace:patient", args=[imported_patient.pk]))
    assert response.status_code == 404
    assert b"Rivera" not in response.content


def test_a_partner_service_account_cannot_use_the_pages(client_for, partner, imported_patient):
    client = client_for(partner)
    assert client.get(reverse("patients:list")).status_code == 403
    assert client.get(reverse("workspace:patient", args=[imported_patient.pk])).status_code == 403


def test_a_user_without_an_organisation_sees_nothing(client, db, imported_patient):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_user("loner", password="x-long-password-9"))
    assert client.get(reverse("patients:list")).status_code == 403


def test_sign_out_needs_a_post(client_for, clinician):
    client = client_for(clinician)
    assert client.get(reverse("logout")).status_code == 405
    assert client.post(reverse("logout")).status_code == 302


def test_values_are_rounded_and_blood_pressure_reads_systolic_over_diastolic(client_for, clinician, organisation):
    panel = fb.bp_panel("bp-x", "pat-x", "pat-x-enc", systolic=119.1, diastolic=68.8)
    panel["component"].reverse()  # Synthea lists diastolic first
    bundle = fb.bundle(
        fb.patient("pat-x"),
        fb.encounter("pat-x-enc", "pat-x"),
        panel,
        fb.observation("w", "pat-x", "pat-x-enc", value={"valueQuantity": {"value": 64.5928, "unit": "kg"}}),
    )
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="x").ok
    patient = organisation.patients.get(external_id="pat-x")
    content = client_for(clinician).get(reverse("workspace:patient", args=[patient.pk])).content.decode()
    assert "119/69 mmHg" in content
    assert "64.6 kg" in content


def test_the_list_pages_through_a_large_organisation(client_for, clinician, organisation, other_organisation):
    from tests.factories import PatientFactory

    PatientFactory.create_batch(30, organisation=organisation)
    PatientFactory.create_batch(5, organisation=other_organisation)
    client = client_for(clinician)
    first = client.get(reverse("patients:list"))
    second = client.get(reverse("patients:list"), {"page": 2})
    assert first.context["page"].paginator.count == 30
    assert len(first.context["patients"]) == 25
    assert len(second.context["patients"]) == 5
    shown = {patient.pk for patient in first.context["patients"] + second.context["patients"]}
    assert shown == set(organisation.patients.values_list("pk", flat=True))
    assert client.get(reverse("patients:list"), {"page": "abc"}).status_code == 200


def test_the_patient_list_opens_on_living_patients_with_current_pregnancies_first(client_for, clinician, organisation):
    today = timezone.now().date()
    PatientFactory(organisation=organisation, family_name="Aaron", given_names="Ada")  # not pregnant, first by name
    PatientFactory(
        organisation=organisation, family_name="Zimmer", given_names="Zoe", pregnancy_start=today - timedelta(weeks=20)
    )
    PatientFactory(organisation=organisation, family_name="Baker", given_names="Bea", deceased_at=timezone.now())
    page = client_for(clinician).get(reverse("patients:list"))
    names = [patient.family_name for patient in page.context["patients"]]
    assert names == ["Zimmer", "Aaron"]
    everyone = client_for(clinician).get(reverse("patients:list"), {"who": "everyone"})
    assert [patient.family_name for patient in everyone.context["patients"]] == ["Zimmer", "Aaron", "Baker"]
