"""Her record page renders her record once and keeps that rendering only while her record is unchanged: every
write to it (a single row from the admin, a bundle import, demo data, peer training) raises her record version,
so a clinician never reads a stale record. What is kept holds no name or identifier, and nobody from another
organisation reaches it."""

from datetime import date, datetime, timedelta
from datetime import timezone as tz

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from patients import models as pm
from patients.services import patient_import_bundle
from patients.signals import record_models
from prompting.peer_models import peer_model_create, peer_model_train
from prompting.record_page import record_page_key
from tests import fhir_builders as fb


def record_reads(client, patient) -> tuple[str, int]:
    """(the page, how many times her observations were read to render it)."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/patients/{patient.pk}/")
    assert response.status_code == 200
    return response.content.decode(), sum('"patients_observation"' in q["sql"] for q in queries.captured_queries)


def version_of(patient) -> int:
    return pm.Patient.objects.get(pk=patient.pk).record_version


@pytest.fixture
def clinician_client(client_for, clinician):
    return client_for(clinician)


class TestHerRecordIsRenderedOnceWhileItIsUnchanged:
    def test_opening_her_record_again_does_not_read_her_record_again(self, clinician_client, imported_patient):
        first, reads = record_reads(clinician_client, imported_patient)
        assert reads > 0
        second, reads_again = record_reads(clinician_client, imported_patient)
        assert reads_again == 0
        assert "Normal pregnancy" in second
        assert second.count("Risk flags") == first.count("Risk flags") == 1

    def test_the_page_around_the_record_is_still_per_request(
        self, client_for, clinician, organisation, imported_patient
    ):
        colleague = client_for(clinician)
        page, _ = record_reads(colleague, imported_patient)
        assert 'name="csrfmiddlewaretoken"' in page  # the consultation form is rendered for this request
        assert "Rivera" in page  # her name, around the kept record

    def test_the_kept_rendering_holds_no_name_or_identifier(self, clinician_client, imported_patient):
        record_reads(clinician_client, imported_patient)
        kept = cache.get(record_page_key(imported_patient, datetime.now(tz.utc).date()))
        assert set(kept) == {"status", "flags", "body"}
        everything = "".join(kept.values())
        assert "Normal pregnancy" in everything
        for identifier in ("Rivera", "Ana", imported_patient.external_id):
            assert identifier not in everything

    def test_with_no_cache_time_her_record_is_read_every_time(self, settings, clinician_client, imported_patient):
        settings.PMLM_RECORD_CACHE_SECONDS = 0
        record_reads(clinician_client, imported_patient)
        assert record_reads(clinician_client, imported_patient)[1] > 0


class TestEveryWriteToHerRecordShowsAtOnce:
    def test_a_condition_added_by_a_curator_shows_on_her_next_opening(self, clinician_client, imported_patient):
        record_reads(clinician_client, imported_patient)
        pm.Condition.objects.create(
            organisation=imported_patient.organisation,
            patient=imported_patient,
            fhir_id="added-1",
            code="11687002",
            display="Gestational diabetes mellitus",
            onset_at=datetime(2025, 4, 1, tzinfo=tz.utc),
        )
        page, reads = record_reads(clinician_client, imported_patient)
        assert reads > 0
        assert "Gestational diabetes mellitus" in page

    def test_a_deleted_reading_disappears_on_her_next_opening(self, clinician_client, imported_patient):
        page, _ = record_reads(clinician_client, imported_patient)
        assert "71.5" in page
        pm.Observation.objects.get(patient=imported_patient, fhir_id="pat-1-weight").delete()
        page, _ = record_reads(clinician_client, imported_patient)
        assert "71.5" not in page

    def test_a_bundle_imported_over_her_record_shows_at_once(self, clinician_client, organisation, imported_patient):
        record_reads(clinician_client, imported_patient)
        bundle = fb.bundle(
            fb.patient("pat-1"),
            fb.condition("pat-1-gdm", "pat-1", code="11687002", display="Gestational diabetes mellitus"),
        )
        assert patient_import_bundle(organisation=organisation, bundle=bundle, source="test").ok
        page, _ = record_reads(clinician_client, imported_patient)
        assert "Gestational diabetes mellitus" in page

    def test_every_kind_of_row_in_her_record_raises_her_record_version_when_written_or_deleted(
        self, imported_patient, foreign_patient
    ):
        kinds = {model.__name__ for model in record_models()}
        assert {"Observation", "Condition", "Encounter", "MedicationRequest", "LifestyleRecord", "CareRating"} <= kinds
        assert {"PhysicianRecommendation", "AllergyIntolerance", "Procedure", "MedicationStatement"} <= kinds
        observation = pm.Observation.objects.filter(patient=imported_patient).first()
        before, theirs = version_of(imported_patient), version_of(foreign_patient)
        observation.save()
        assert version_of(imported_patient) == before + 1
        observation.delete()
        assert version_of(imported_patient) == before + 2
        assert version_of(foreign_patient) == theirs  # nobody else's record moved

    def test_her_own_details_edited_show_at_once(self, clinician_client, imported_patient):
        record_reads(clinician_client, imported_patient)
        imported_patient.deceased_at = datetime(2025, 6, 1, tzinfo=tz.utc)
        imported_patient.save()
        page, _ = record_reads(clinician_client, imported_patient)
        assert "Deceased 1 Jun 2025" in page

    def test_a_renamed_care_item_shows_under_its_new_name_in_every_record_that_rated_it(self, imported_patient):
        item = pm.CareItem.objects.create(slug="walking-test", name="Walking", category="intervention")
        pm.CareRating.objects.create(patient=imported_patient, care_item=item, rating=4, rated_on=date(2025, 4, 1))
        before = version_of(imported_patient)
        item.name = "Brisk walking"
        item.save()
        assert version_of(imported_patient) == before + 1

    def test_training_new_peers_raises_every_record_of_the_clinic_and_no_other(self, cohort, foreign_patient):
        organisation = cohort[0].organisation
        items = [
            pm.CareItem.objects.create(slug=f"item-{n}", name=f"Item {n}", category="intervention") for n in range(3)
        ]
        for n, patient in enumerate(cohort):
            for item in items:
                pm.CareRating.objects.create(
                    patient=patient, care_item=item, rating=3 + n % 3, rated_on=date(2025, 4, 1)
                )
        before = {p.pk: version_of(p) for p in cohort}
        theirs = version_of(foreign_patient)
        peer_model_train(peer_model_id=peer_model_create(organisation=organisation).pk)
        assert all(version_of(p) > before[p.pk] for p in cohort)
        assert version_of(foreign_patient) == theirs

    def test_a_new_day_renders_her_record_again(self, imported_patient):
        today = date(2025, 5, 2)
        assert record_page_key(imported_patient, today) != record_page_key(imported_patient, today + timedelta(days=1))


class TestNobodyElseReachesIt:
    def test_another_organisations_clinician_is_refused_her_record_even_when_it_is_kept(
        self, clinician_client, client_for, outsider, imported_patient
    ):
        record_reads(clinician_client, imported_patient)
        response = client_for(outsider).get(f"/patients/{imported_patient.pk}/")
        assert response.status_code == 404
        assert "Normal pregnancy" not in response.content.decode()
