"""Curation in the admin: scoped to the curator's organisation, with history and CSV export."""

from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from patients import models as m
from tests import fhir_builders as fb


def test_a_curator_sees_only_her_organisations_patients(curator_client, imported_patient, foreign_patient):
    response = curator_client.get(reverse("admin:patients_patient_changelist"))
    assert response.status_code == 200
    assert list(response.context["cl"].queryset) == [imported_patient]


def test_a_curator_cannot_open_another_organisations_record(curator_client, foreign_patient):
    response = curator_client.get(reverse("admin:patients_patient_change", args=[foreign_patient.pk]))
    assert response.status_code == 302  # the admin redirects when the object is not in the queryset
    assert b"pat-south" not in response.content


def test_the_fhir_id_is_read_only_once_imported(curator_client, imported_patient):
    obs = m.Observation.objects.get(fhir_id="pat-1-weight")
    response = curator_client.get(reverse("admin:patients_observation_change", args=[obs.pk]))
    assert response.status_code == 200
    assert "fhir_id" not in response.context["adminform"].form.fields


def test_an_edit_is_kept_in_the_change_history(curator_client, imported_patient, curator):
    obs = m.Observation.objects.get(fhir_id="pat-1-weight")
    obs.value_quantity = 72.0
    obs._history_user = curator
    obs.save()
    record = obs.history.first()
    assert record.value_quantity == 72.0
    assert record.history_user == curator
    assert curator_client.get(reverse("admin:patients_observation_history", args=[obs.pk])).status_code == 200


def test_csv_export_includes_only_selected_rows_and_defuses_formulas(curator_client, imported_patient):
    obs = m.Observation.objects.get(fhir_id="pat-1-weight")
    obs.display = "=HYPERLINK(1)"
    obs.save()
    response = curator_client.post(
        reverse("admin:patients_observation_changelist"), {"action": "export_csv", "_selected_action": [obs.pk]}
    )
    body = b"".join(response.streaming_content).decode()
    assert response["Content-Type"].startswith("text/csv")
    assert body.splitlines()[0].startswith("id,")
    assert "'=HYPERLINK(1)" in body
    assert len(body.strip().splitlines()) == 2


def test_every_model_of_the_record_has_an_admin_page(curator_client, imported_patient):
    for model in [
        m.Organisation,
        m.Membership,
        m.Patient,
        m.Encounter,
        m.Observation,
        m.Condition,
        m.MedicationRequest,
        m.MedicationStatement,
        m.AllergyIntolerance,
        m.Procedure,
        m.Immunization,
        m.CarePlan,
        m.LifestyleRecord,
        m.CareItem,
        m.CareRating,
        m.PhysicianRecommendation,
        m.BundleImport,
        m.ImportJob,
    ]:
        url = reverse(f"admin:patients_{model._meta.model_name}_changelist")
        assert curator_client.get(url).status_code == 200, url


def test_uploading_a_bundle_queues_an_import_job(
    curator_client, organisation, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr("patients.tasks.run_import_job.delay", lambda job_id: queued.append(job_id))
    upload = SimpleUploadedFile("bundle.json", __import__("json").dumps(fb.small_bundle()).encode(), "application/json")
    with django_capture_on_commit_callbacks(execute=True):
        response = curator_client.post(
            reverse("admin:patients_importjob_add"), {"organisation": organisation.pk, "upload": upload}
        )
    assert response.status_code == 302
    job = m.ImportJob.objects.get()
    assert queued == [job.pk]
    assert job.status == m.JobStatus.QUEUED
