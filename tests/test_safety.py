"""Medication safety in pregnancy and lactation, and allergy conflicts."""

from prompting.pmlm import codes
from prompting.pmlm.history import Allergy, Diagnosis, Medication, PatientHistory
from prompting.pmlm.safety import safety_warnings
from prompting.pmlm.state import current_pregnancy


def history(weeks=24, medications=(), allergies=(), pregnant=True):
    diagnoses = [Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", weeks * 7)] if pregnant else []
    return PatientHistory(30, diagnoses=diagnoses, medications=list(medications), allergies=list(allergies))


def warnings(h, text=""):
    return safety_warnings(h, current_pregnancy(h), text)


def test_an_active_contraindicated_medicine_is_flagged_by_code_or_ingredient():
    by_code = history(medications=[Medication("855332", "Warfarin Sodium 5 MG Oral Tablet", "active", 30)])
    by_name = history(medications=[Medication("999", "Simvistatin 10 MG", "active", 30)])  # Synthea's spelling
    assert [w.code for w in warnings(by_code)] == ["contraindicated_medication"]
    assert "statins" in warnings(by_name)[0].message


def test_a_stopped_medicine_is_not_flagged():
    assert warnings(history(medications=[Medication("855332", "Warfarin", "stopped", 300)])) == []


def test_a_contraindicated_drug_named_in_the_guidance_is_flagged():
    found = warnings(history(), "Start lisinopril 10 mg daily for her blood pressure.")
    assert found
    assert found[0].severity == "high"
    assert "lisinopril" in found[0].message


def test_nsaids_are_a_caution_only_from_20_weeks():
    assert warnings(history(weeks=19), "ibuprofen 400 mg for pain") == []
    assert [w.code for w in warnings(history(weeks=20), "ibuprofen 400 mg for pain")] == ["caution_medication"]


def test_a_patient_who_is_not_pregnant_gets_no_pregnancy_warnings():
    assert warnings(history(pregnant=False), "warfarin and lisinopril") == []


def test_an_allergy_conflict_is_flagged_pregnant_or_not():
    penicillin = [Allergy("91936005", "Allergy to penicillin")]
    for h in (history(allergies=penicillin), history(allergies=penicillin, pregnant=False)):
        found = warnings(h, "Treat the UTI with amoxicillin 500 mg.")
        assert [w.code for w in found] == ["allergy_conflict"]


def test_every_table_entry_has_a_source_and_reason():
    from prompting.pmlm.safety import table

    for entry in table()["medicines"]:
        assert entry["source"] in table()["sources"]
        assert entry["reason"]
        assert entry["terms"]
