"""Importing bundles: idempotent, all-or-nothing per bundle, scoped to one organisation."""

import gzip
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from patients import models as m
from patients.services import fhir_import_paths, patient_import_bundle
from tests import fhir_builders as fb

SYNTHEA = Path(__file__).resolve().parent.parent / "demo_data" / "synthea_obgyn"
RECORD_MODELS = [
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
]


def row_counts():
    return {model.__name__: model.objects.count() for model in RECORD_MODELS}


def write_bundle(path: Path, bundle) -> Path:
    path.write_text(json.dumps(bundle))
    return path


def test_it_imports_a_bundle_into_the_record(organisation):
    result = patient_import_bundle(organisation=organisation, bundle=fb.small_bundle(), source="test")
    assert result.ok, result.error
    patient = m.Patient.objects.get(organisation=organisation, external_id="pat-1")
    assert (patient.given_names, patient.family_name, patient.language) == ("Ana Lucia", "Rivera", "Spanish")
    assert patient.identifiers[0]["value"] == "MRN-pat-1"
    weight = m.Observation.objects.get(fhir_id="pat-1-weight")
    assert weight.value_quantity == 71.5
    assert weight.encounter.fhir_id == "pat-1-enc"
    assert weight.patient == patient
    assert result.counts["Observation"] == {"created": 3, "updated": 0}
    assert result.counts["skipped"] == {"Organization": 1}
    assert patient.pregnancy_start.isoformat() == "2025-03-01"
    assert patient.pregnancy_end is None
    assert m.BundleImport.objects.get().status == m.ImportStatus.IMPORTED


def test_reimporting_the_same_bundle_updates_and_creates_nothing_new(organisation):
    patient_import_bundle(organisation=organisation, bundle=fb.small_bundle(), source="first")
    before = row_counts()
    changed = fb.with_resource(fb.small_bundle(), "pat-1-weight", lambda r: r["valueQuantity"].update(value=73.0))
    result = patient_import_bundle(organisation=organisation, bundle=changed, source="second")
    assert result.ok
    assert row_counts() == before
    assert result.counts["Observation"] == {"created": 0, "updated": 3}
    assert m.Observation.objects.get(fhir_id="pat-1-weight").value_quantity == 73.0


def test_a_bundle_with_one_corrupted_observation_changes_nothing(organisation):
    patient_import_bundle(organisation=organisation, bundle=fb.small_bundle(), source="first")
    before = row_counts()
    corrupted = fb.with_resource(
        fb.small_bundle(), "pat-1-bp", lambda r: r["component"][0]["valueQuantity"].update(value="high")
    )
    corrupted["entry"].insert(1, {"resource": fb.patient("pat-2", family="New")})
    result = patient_import_bundle(organisation=organisation, bundle=corrupted, source="bad.json")
    assert not result.ok
    assert "Observation/pat-1-bp" in result.error
    assert "component[0]" in result.error
    assert row_counts() == before
    assert not m.Patient.objects.filter(external_id="pat-2").exists()
    assert m.BundleImport.objects.filter(status=m.ImportStatus.REJECTED, source="bad.json").exists()


def test_a_database_refusal_rolls_the_whole_bundle_back(organisation):
    too_long = fb.with_resource(
        fb.small_bundle(), "pat-1-weight", lambda r: r["code"]["coding"][0].update(code="9" * 80)
    )
    result = patient_import_bundle(organisation=organisation, bundle=too_long, source="long")
    assert not result.ok
    assert "longer than 64" in result.error
    assert row_counts()["Patient"] == 0


def test_a_nul_character_is_refused_before_it_reaches_the_database(organisation):
    bundle = fb.with_resource(fb.small_bundle(), "pat-1", lambda r: r["name"][0].update(family="Riv\x00era"))
    result = patient_import_bundle(organisation=organisation, bundle=bundle, source="nul")
    assert not result.ok
    assert "NUL" in result.error


def test_the_same_fhir_ids_in_two_organisations_stay_apart(organisation, other_organisation):
    patient_import_bundle(organisation=organisation, bundle=fb.small_bundle(), source="north")
    patient_import_bundle(organisation=other_organisation, bundle=fb.small_bundle(), source="south")
    assert m.Patient.objects.filter(external_id="pat-1").count() == 2
    south = m.Patient.objects.get(organisation=other_organisation)
    assert set(m.Observation.objects.filter(patient=south).values_list("organisation", flat=True)) == {
        other_organisation.pk
    }


def test_a_later_bundle_may_refer_to_a_patient_already_held(organisation):
    patient_import_bundle(organisation=organisation, bundle=fb.small_bundle(), source="first")
    later = fb.bundle(fb.observation("later-weight", eid=None, value={"valueQuantity": {"value": 74, "unit": "kg"}}))
    later["entry"][0]["resource"]["subject"] = {"reference": "Patient/pat-1"}
    later["entry"][0]["resource"]["encounter"] = {"reference": "Encounter/pat-1-enc"}
    result = patient_import_bundle(organisation=organisation, bundle=later, source="later")
    assert result.ok, result.error
    obs = m.Observation.objects.get(fhir_id="later-weight")
    assert obs.patient.external_id == "pat-1"
    assert obs.encounter.fhir_id == "pat-1-enc"


def test_a_dangling_encounter_outside_the_bundle_is_tolerated(organisation):
    bundle = fb.with_resource(
        fb.small_bundle(), "pat-1-weight", lambda r: r.update(encounter={"reference": "Encounter/gone"})
    )
    result = patient_import_bundle(organisation=organisation, bundle=bundle, source="dangling")
    assert result.ok
    assert m.Observation.objects.get(fhir_id="pat-1-weight").encounter is None


def test_a_subject_nobody_holds_rejects_the_bundle(organisation, other_organisation):
    patient_import_bundle(organisation=other_organisation, bundle=fb.small_bundle(), source="south")
    later = fb.bundle(fb.observation("x", eid=None, value={"valueQuantity": {"value": 1, "unit": "kg"}}))
    later["entry"][0]["resource"]["subject"] = {"reference": "Patient/pat-1"}
    result = patient_import_bundle(organisation=organisation, bundle=later, source="later")
    assert not result.ok
    assert "neither in this bundle nor held for this organisation" in result.error


def test_the_command_imports_files_and_folders_and_fails_naming_the_bad_file(organisation, tmp_path, capsys):
    good = write_bundle(tmp_path / "good.json", fb.small_bundle("pat-a"))
    with gzip.open(tmp_path / "zipped.json.gz", "wt") as handle:
        json.dump(fb.small_bundle("pat-b"), handle)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(CommandError) as caught:
        call_command("import_fhir", str(tmp_path), "--org", organisation.slug)
    assert "broken.json" in str(caught.value)
    assert "not valid JSON" in str(caught.value)
    output = capsys.readouterr().out
    assert "2 of 3 bundles imported" in output
    assert set(m.Patient.objects.values_list("external_id", flat=True)) == {"pat-a", "pat-b"}
    call_command("import_fhir", str(good), "--org", organisation.slug)  # a clean run exits normally


def test_the_command_creates_a_missing_organisation(db, tmp_path):
    call_command("import_fhir", str(write_bundle(tmp_path / "b.json", fb.small_bundle())), "--org", "east-clinic")
    assert m.Organisation.objects.get(slug="east-clinic").patients.count() == 1


def test_an_oversized_file_is_refused_before_it_is_read(organisation, tmp_path, settings):
    settings.PMLM_MAX_BUNDLE_BYTES = 100
    path = write_bundle(tmp_path / "big.json", fb.small_bundle())
    [result] = fhir_import_paths(organisation=organisation, paths=[path])
    assert not result.ok
    assert "larger than" in result.error
    assert m.Patient.objects.count() == 0


def test_a_corrupt_gzip_file_is_rejected_with_its_name(organisation, tmp_path):
    path = tmp_path / "bad.json.gz"
    path.write_bytes(b"not gzip at all")
    [result] = fhir_import_paths(organisation=organisation, paths=[path])
    assert not result.ok
    assert "bad.json.gz" in result.error


@pytest.mark.django_db
def test_every_shipped_synthea_bundle_imports_and_a_second_run_creates_nothing(organisation):
    paths = sorted(SYNTHEA.glob("*.json.gz"))
    assert len(paths) == 241
    results = fhir_import_paths(organisation=organisation, paths=paths)
    assert [r.error for r in results if not r.ok] == []
    before = row_counts()
    assert before["Patient"] == 241
    assert before["Observation"] == 33900
    again = fhir_import_paths(organisation=organisation, paths=paths[:40])
    assert all(r.ok for r in again)
    assert row_counts() == before
    assert all(sum(c["created"] for k, c in r.counts.items() if k != "skipped") == 0 for r in again)
    # No zero-width characters survive into the record.
    assert not m.Observation.objects.filter(display__contains="\u200b").exists()
    assert connection.vendor in {"sqlite", "postgresql"}
