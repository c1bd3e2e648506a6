"""The patient list and the API call her pregnant exactly when her record page does: never a wrong "not pregnant"
for a pregnancy her record proves but the pregnancy episode does not date."""

from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from patients.services import patient_import_bundle
from prompting.pmlm.state import current_pregnancy
from prompting.selectors import patient_history
from tests import fhir_builders as fb


def _when(days_ago: int) -> str:
    return (timezone.now() - timedelta(days=days_ago)).strftime("%Y-%m-%dT09:00:00Z")


def _import(organisation, pid: str, *resources):
    result = patient_import_bundle(
        organisation=organisation, bundle=fb.bundle(fb.patient(pid, family=pid.title()), *resources), source="test"
    )
    assert result.ok, result.error
    return organisation.patients.get(external_id=pid)


def _listed(client, **filters) -> list[str]:
    response = client.get(reverse("patients:list"), filters)
    return [patient.external_id for patient in response.context["patients"]]


def test_antenatal_care_three_weeks_ago_without_an_episode_is_pregnant_in_the_list_the_api_and_her_record(
    organisation, clinician, partner, client_for, api
):
    her = _import(organisation, "undated", fb.encounter("undated-enc", "undated", start=_when(21)))
    _import(organisation, "notpreg", fb.encounter("notpreg-enc", "notpreg", start=_when(21), code="185349003"))
    assert current_pregnancy(patient_history(her, timezone.now().date())).pregnant  # her record page's reading

    client = client_for(clinician)
    assert _listed(client, pregnant="yes") == ["undated"]
    assert _listed(client, pregnant="no") == ["notpreg"]
    assert _listed(client, trimester="2") == []  # her gestational age is not known
    page = client.get(reverse("patients:list")).content.decode()
    assert "pregnant · GA not recorded" in page
    assert _listed(client)[0] == "undated"  # current pregnancies first

    from api.tokens import token_issue

    _, token = token_issue(username=partner.username)
    rows = api("get", "/api/v1/patients/?pregnant=true", token).json()["results"]
    assert [(row["id"], row["pregnant"]) for row in rows] == [("undated", True)]


def test_an_undated_pregnancy_leaves_the_list_eight_weeks_after_its_last_evidence(organisation, clinician, client_for):
    _import(organisation, "lapsed", fb.encounter("lapsed-enc", "lapsed", start=_when(60)))
    assert _listed(client_for(clinician), pregnant="yes") == []


def test_a_gestational_age_observation_without_an_episode_dates_her_pregnancy_in_the_list(
    organisation, clinician, client_for
):
    ga = fb.observation(
        "ga-obs", "ga", None, code="49051-6", value={"valueQuantity": {"value": 20, "unit": "wk"}}, when=_when(7)
    )
    her = _import(organisation, "ga", ga)
    record = current_pregnancy(patient_history(her, timezone.now().date()))
    assert record.weeks == 21
    client = client_for(clinician)
    assert _listed(client, trimester="2") == ["ga"]
    assert "21+0 wk · T2" in client.get(reverse("patients:list")).content.decode()


def test_a_pregnancy_her_record_dates_by_the_episode_is_dated_as_before(organisation, clinician, client_for):
    onset = (timezone.now() - timedelta(weeks=30)).strftime("%Y-%m-%dT00:00:00Z")
    _import(organisation, "episode", fb.condition("episode-preg", "episode", onset=onset))
    client = client_for(clinician)
    assert _listed(client, trimester="3") == ["episode"]
    assert "30+0 wk · T3" in client.get(reverse("patients:list")).content.decode()
