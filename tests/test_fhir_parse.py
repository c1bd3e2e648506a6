"""The parser reads only what the record keeps, strictly, and names resource and field on error."""

import pytest

from patients.fhir.parse import FhirError, parse_bundle, parse_datetime
from tests import fhir_builders as fb


def reject(bundle, *fragments):
    with pytest.raises(FhirError) as caught:
        parse_bundle(bundle)
    for fragment in fragments:
        assert fragment in str(caught.value)
    return caught.value


def test_it_parses_every_value_form_and_component_panels():
    bundle = fb.bundle(
        fb.patient(),
        fb.encounter(),
        fb.observation("q", value={"valueQuantity": {"value": 70, "unit": "kg"}}),
        fb.observation(
            "c",
            code="10331-7",
            value={"valueCodeableConcept": {"coding": [{"system": fb.SNOMED, "code": "165746003"}]}},
        ),
        fb.observation("s", code="20454-5", value={"valueString": "2+"}),
        fb.observation("b", code="secondhand-smoke", value={"valueBoolean": True}),
        fb.observation("i", code="11996-6", value={"valueInteger": 2}),
        fb.bp_panel("bp", systolic=141, diastolic=92),
    )
    records = {r.fhir_id: r for r in parse_bundle(bundle).records}
    assert records["q"].fields["value_quantity"] == 70.0
    assert records["q"].fields["value_unit"] == "kg"
    assert records["c"].fields["value_code"] == "165746003"
    assert records["s"].fields["value_string"] == "2+"
    assert records["b"].fields["value_boolean"] is True
    assert records["i"].fields["value_quantity"] == 2.0
    assert [(c["code"], c["value_quantity"], c["unit"]) for c in records["bp"].fields["components"]] == [
        ("8480-6", 141.0, "mm[Hg]"),
        ("8462-4", 92.0, "mm[Hg]"),
    ]
    assert records["q"].patient.fhir_id == "pat-1"
    assert records["q"].encounter.fhir_id == "enc-1"


def test_it_strips_zero_width_characters_from_displays():
    parsed = parse_bundle(fb.small_bundle())
    smoking = next(r for r in parsed.records if r.fhir_id == "pat-1-smoke")
    assert smoking.fields["value_display"] == "Never smoked"


def test_it_counts_resource_types_it_does_not_keep_as_skipped():
    assert parse_bundle(fb.small_bundle()).skipped == {"Organization": 1}


def test_it_rejects_a_non_numeric_quantity_naming_resource_and_field():
    bundle = fb.with_resource(fb.small_bundle(), "pat-1-weight", lambda r: r["valueQuantity"].update(value="heavy"))
    error = reject(bundle, "Observation/pat-1-weight", "value", "must be a number")
    assert error.resource == "Observation/pat-1-weight"


def test_it_rejects_a_boolean_where_a_number_belongs():
    bundle = fb.with_resource(fb.small_bundle(), "pat-1-weight", lambda r: r["valueQuantity"].update(value=True))
    reject(bundle, "must be a number")


def test_it_rejects_a_missing_required_field():
    bundle = fb.with_resource(fb.small_bundle(), "pat-1-weight", lambda r: r.pop("code"))
    reject(bundle, "Observation/pat-1-weight", "'code'", "is required")


def test_it_rejects_a_field_of_the_wrong_type():
    bundle = fb.with_resource(fb.small_bundle(), "pat-1-enc", lambda r: r.update(status=3))
    reject(bundle, "Encounter/pat-1-enc", "'status'", "must be a string")


def test_it_rejects_a_bundle_reference_to_an_entry_that_is_not_there():
    bundle = fb.with_resource(
        fb.small_bundle(), "pat-1-weight", lambda r: r.update(encounter={"reference": "urn:uuid:nowhere"})
    )
    reject(bundle, "Observation/pat-1-weight", "encounter.reference", "names no entry")


def test_it_rejects_a_subject_that_points_at_the_wrong_type():
    bundle = fb.with_resource(
        fb.small_bundle(), "pat-1-weight", lambda r: r.update(subject={"reference": "urn:uuid:pat-1-enc"})
    )
    reject(bundle, "must point to a Patient")


def test_it_tolerates_references_it_does_not_follow():
    bundle = fb.with_resource(
        fb.small_bundle(), "pat-1-weight", lambda r: r.update(basedOn=[{"reference": "urn:uuid:removed-claim"}])
    )
    assert parse_bundle(bundle).records


def test_it_keeps_a_relative_reference_outside_the_bundle_for_the_store_to_resolve():
    bundle = fb.with_resource(
        fb.small_bundle(), "pat-1-weight", lambda r: r.update(encounter={"reference": "Encounter/older-visit"})
    )
    weight = next(r for r in parse_bundle(bundle).records if r.fhir_id == "pat-1-weight")
    assert (weight.encounter.fhir_id, weight.encounter.in_bundle) == ("older-visit", False)


def test_it_rejects_two_value_forms_at_once():
    bundle = fb.with_resource(fb.small_bundle(), "pat-1-weight", lambda r: r.update(valueString="71"))
    reject(bundle, "only one value[x]")


def test_it_rejects_a_duplicate_resource():
    bundle = fb.small_bundle()
    bundle["entry"].append(bundle["entry"][2])
    reject(bundle, "appears twice")


@pytest.mark.parametrize(
    "bundle, fragment",
    [
        ([], "must be a JSON object"),
        ({"resourceType": "Patient"}, "resourceType must be 'Bundle'"),
        ({"resourceType": "Bundle", "type": "history", "entry": []}, "not supported"),
        ({"resourceType": "Bundle", "type": "transaction", "entry": {}}, "must be a list"),
        ({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"id": "x"}}]}, "resourceType"),
        (
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [{"resource": {"resourceType": "Patient", "id": "bad id!"}}],
            },
            "'id'",
        ),
    ],
)
def test_it_rejects_malformed_bundles_with_a_clear_message(bundle, fragment):
    reject(bundle, fragment)


def test_it_refuses_delete_entries():
    bundle = fb.small_bundle()
    bundle["entry"][1]["request"] = {"method": "DELETE", "url": "Encounter/pat-1-enc"}
    reject(bundle, "DELETE")


def test_it_refuses_more_entries_than_the_limit():
    with pytest.raises(FhirError, match="limit is 3"):
        parse_bundle(fb.small_bundle(), max_entries=3)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2024", "2024-01-01T00:00:00+00:00"),
        ("2024-07", "2024-07-01T00:00:00+00:00"),
        ("2024-07-09", "2024-07-09T00:00:00+00:00"),
        ("2024-07-09T10:30:00-05:00", "2024-07-09T15:30:00+00:00"),
        ("2024-07-09T10:30:00.123Z", "2024-07-09T10:30:00.123000+00:00"),
    ],
)
def test_it_reads_fhir_dates_and_datetimes_in_utc(text, expected):
    assert parse_datetime(text).isoformat() == expected


@pytest.mark.parametrize("text", ["2024-13-01", "yesterday", "2024-07-09T10:30", "2024-02-30"])
def test_it_rejects_invalid_dates(text):
    with pytest.raises(FhirError):
        parse_datetime(text)


def test_it_rejects_a_status_outside_the_fhir_value_set():
    bundle = fb.with_resource(fb.small_bundle(), "pat-1-weight", lambda r: r.update(status="done-ish"))
    reject(bundle, "Observation/pat-1-weight", "'status'", "is not one of")


def test_a_marital_status_given_only_as_its_code_is_read_in_words():
    bundle = fb.with_resource(
        fb.small_bundle(),
        "pat-1",
        lambda r: r.update(
            maritalStatus={
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M", "display": "M"}
                ],
                "text": "M",
            }
        ),
    )
    patient = next(r for r in parse_bundle(bundle).records if r.resource_type == "Patient")
    assert patient.fields["marital_status"] == "Married"
