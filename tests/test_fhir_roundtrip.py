"""Export a patient as a Bundle and import it elsewhere: the same record comes back."""

from pathlib import Path

from django.forms.models import model_to_dict

from patients import models as m
from patients.fhir.export import patient_bundle
from patients.services import patient_import_bundle, read_bundle_file
from tests import fhir_builders as fb

SYNTHEA = Path(__file__).resolve().parent.parent / "demo_data" / "synthea_obgyn"
IGNORED = {"id", "organisation", "patient", "encounter", "created_at", "updated_at"}


def snapshot(patient):
    rows = {}
    for model in [
        m.Encounter,
        m.Observation,
        m.Condition,
        m.MedicationRequest,
        m.MedicationStatement,
        m.AllergyIntolerance,
        m.Procedure,
        m.Immunization,
        m.CarePlan,
    ]:
        for obj in model.objects.filter(patient=patient):
            data = {k: v for k, v in model_to_dict(obj).items() if k not in IGNORED}
            data["encounter"] = obj.encounter.fhir_id if getattr(obj, "encounter", None) else None
            rows[(model.__name__, obj.fhir_id)] = data
    person = {k: v for k, v in model_to_dict(patient).items() if k not in IGNORED}
    return person, rows


def round_trip(organisation, other_organisation, bundle):
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="original").ok
    original = organisation.patients.get()
    exported = patient_bundle(original)
    result = patient_import_bundle(organisation=other_organisation, bundle=exported, source="exported")
    assert result.ok, result.error
    return snapshot(original), snapshot(other_organisation.patients.get())


def test_a_small_record_survives_export_and_reimport(organisation, other_organisation):
    original, copy = round_trip(organisation, other_organisation, fb.small_bundle())
    assert copy == original


def test_a_full_synthea_record_survives_export_and_reimport(organisation, other_organisation):
    bundle = read_bundle_file(sorted(SYNTHEA.glob("*.json.gz"))[0])
    (person, rows), (person_copy, rows_copy) = round_trip(organisation, other_organisation, bundle)
    assert person_copy == person
    assert rows_copy.keys() == rows.keys()
    assert len(rows) > 100
    assert rows_copy == rows
