"""She is pregnant at an antenatal visit even when nothing dates the pregnancy.

Records written elsewhere (WHO's antenatal test cases, Synthea patients) may hold antenatal care
or findings only a pregnancy produces, but no gestational age, last menstrual period or pregnancy
condition. She is then pregnant with the gestational age not recorded: every rule that does not
need the gestational age applies to the values of the last 42 weeks (never before the end of an
earlier pregnancy), and the prompt and the page say so.
"""

from datetime import date, timedelta

import pytest

from patients.services import patient_import_bundle
from prompting.pmlm import codes
from prompting.pmlm.composer import TemplateSpec, compose
from prompting.pmlm.history import Diagnosis, Medication, PatientHistory, ProcedureDone, Reading, Visit
from prompting.pmlm.risk import risk_flags
from prompting.pmlm.safety import safety_warnings
from prompting.pmlm.selfinformed import summarise
from prompting.pmlm.state import current_pregnancy
from prompting.prompts import prompt_build
from prompting.selectors import patient_history
from tests import fhir_builders as fb

TEMPLATE = TemplateSpec(
    "t-1",
    "Advise the clinician.",
    {"self": "Her record", "peer": "Patients like her", "knowledge": "Guidance sources", "question": "Question"},
    10_000,
)
LOOKBACK = codes.UNDATED_PREGNANCY_LOOKBACK_DAYS
EVIDENCE = codes.UNDATED_PREGNANCY_EVIDENCE_DAYS


def antenatal_visit(days_ago=0, code="424619006"):
    return Visit(code, "Prenatal visit", days_ago, prenatal=code in codes.PRENATAL_VISITS)


def q(code, value, unit="", days_ago=0, **kw):
    return Reading(code=code, days_ago=days_ago, quantity=value, unit=unit, **kw)


def record(*readings, visits=(antenatal_visit(),), diagnoses=(), procedures=()):
    """A woman at an antenatal visit today whose record never says how far along she is."""
    return PatientHistory(
        age_years=29,
        readings=list(readings),
        visits=list(visits),
        diagnoses=list(diagnoses),
        procedures=list(procedures),
    )


def flag_codes(h):
    return {f.code for f in risk_flags(h)}


def words(text):
    return len(text.split())


# --- she is pregnant ---------------------------------------------------------------------------------


@pytest.mark.parametrize("code", sorted(codes.PRENATAL_VISITS))
def test_an_antenatal_encounter_today_makes_her_pregnant_with_the_gestational_age_not_recorded(code):
    pregnancy = current_pregnancy(record(visits=[antenatal_visit(0, code)]))
    assert pregnancy.pregnant
    assert not pregnancy.dated
    assert pregnancy.gestational_days is None
    assert pregnancy.weeks is None
    assert pregnancy.trimester is None
    assert pregnancy.label == "gestational age not recorded"
    assert "antenatal care encounter today" in pregnancy.basis


def test_an_encounter_typed_anc_contact_with_a_prenatal_reason_counts_as_antenatal_care():
    who_style = Visit("ANC.Contact", "Antenatal care contact", 0, prenatal=True)  # the selector reads the reason code
    assert current_pregnancy(record(visits=[who_style])).pregnant


@pytest.mark.parametrize(
    "finding",
    [
        q("11878-6", 2, "{#}"),
        q("246435002", 1),
        q("55283-6", 142, "/min"),
        q("57068-9", 150, "/min"),
        q("11881-0", 26, "cm"),
        q("1507-3", 150, "mg/dL"),
    ],
    ids=[
        "fetuses-ultrasound",
        "fetuses-snomed",
        "fetal-heart-rate",
        "fetal-heart-rate-alt",
        "fundal-height",
        "ogtt-1h",
    ],
)
def test_a_pregnancy_only_finding_makes_her_pregnant_without_any_encounter(finding):
    pregnancy = current_pregnancy(record(finding, visits=[]))
    assert pregnancy.pregnant
    assert pregnancy.gestational_days is None
    assert "recorded today" in pregnancy.basis


def test_a_fasting_and_two_hour_ogtt_alone_is_the_ordinary_diabetes_test_and_proves_no_pregnancy():
    h = record(q("1552-9", 130, "mg/dL"), q("1518-0", 210, "mg/dL"), visits=[])
    assert not current_pregnancy(h).pregnant
    assert flag_codes(h) & {"diabetes_in_pregnancy", "gestational_diabetes"} == set()


@pytest.mark.parametrize("days_ago, pregnant", [(EVIDENCE, True), (EVIDENCE + 1, False)])
def test_the_evidence_must_be_from_the_last_8_weeks(days_ago, pregnant):
    assert current_pregnancy(record(visits=[antenatal_visit(days_ago)])).pregnant is pregnant
    assert current_pregnancy(record(q("55283-6", 140, "/min", days_ago), visits=[])).pregnant is pregnant


@pytest.mark.parametrize(
    "ending",
    [
        {"procedures": [ProcedureDone("11466000", "Caesarean section", 3)]},
        {"diagnoses": [Diagnosis("19169002", "Miscarriage in first trimester", 3)]},
        {"diagnoses": [Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 280, abated_days_ago=3)]},
        {"extra_visits": [Visit("169762003", "Postnatal visit", 3)]},
    ],
    ids=["caesarean", "miscarriage", "episode-closed", "postnatal-visit"],
)
def test_antenatal_care_before_the_pregnancy_ended_does_not_make_her_pregnant(ending):
    visits = [antenatal_visit(10)] + ending.pop("extra_visits", [])
    assert not current_pregnancy(record(visits=visits, **ending)).pregnant
    visits = [antenatal_visit(1)] + [v for v in visits[1:]]
    assert current_pregnancy(record(visits=visits, **ending)).pregnant  # a new pregnancy after it


def test_a_dated_pregnancy_still_comes_first():
    h = record(diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 20 * 7)])
    pregnancy = current_pregnancy(h)
    assert pregnancy.dated
    assert pregnancy.weeks == 20
    assert pregnancy.trimester == 2


# --- every rule that does not need the gestational age applies --------------------------------------


@pytest.mark.parametrize(
    "reading, flag",
    [
        (q("1558-6", 210, "mg/dL"), "diabetes_in_pregnancy"),
        (q("1558-6", 7.2, "mmol/L"), "diabetes_in_pregnancy"),
        (q("2345-7", 200, "mg/dL"), "diabetes_in_pregnancy"),
        (q("1518-0", 200, "mg/dL"), "diabetes_in_pregnancy"),
        (q("1558-6", 92, "mg/dL"), "gestational_diabetes"),
        (q("1507-3", 180, "mg/dL"), "gestational_diabetes"),
        (q("1518-0", 153, "mg/dL"), "gestational_diabetes"),
        (q("11878-6", 2, "{#}"), "multiple_pregnancy"),
        (q("11878-6", 2, "{#}"), "pre_eclampsia_risk"),
    ],
)
def test_pregnancy_rules_that_do_not_need_the_gestational_age_are_applied(reading, flag):
    assert flag in flag_codes(record(reading))


@pytest.mark.parametrize("condition", ["59621000", "44054006", "709044004", "85828009", "55464009"])
def test_pre_eclampsia_risk_factors_are_found_in_an_undated_pregnancy(condition):
    assert "pre_eclampsia_risk" in flag_codes(record(diagnoses=[Diagnosis(condition, "", 3 * 365)]))


def test_a_multiple_pregnancy_condition_and_a_pre_eclampsia_condition_count_in_an_undated_pregnancy():
    h = record(diagnoses=[Diagnosis("65147003", "Twin pregnancy", 30), Diagnosis("398254007", "Pre-eclampsia", 5)])
    assert {"multiple_pregnancy", "pre_eclampsia"} <= flag_codes(h)


@pytest.mark.parametrize("days_ago, raised", [(LOOKBACK, True), (LOOKBACK + 1, False)])
def test_values_of_the_last_42_weeks_count_as_this_pregnancy(days_ago, raised):
    assert ("diabetes_in_pregnancy" in flag_codes(record(q("1558-6", 140, "mg/dL", days_ago)))) is raised


def test_values_from_before_the_end_of_an_earlier_pregnancy_do_not_count():
    delivered = ProcedureDone("11466000", "Caesarean section", 100)
    h = record(q("1558-6", 140, "mg/dL", 150), q("11878-6", 2, "{#}", 120), procedures=[delivered])
    pregnancy = current_pregnancy(h)
    assert pregnancy.pregnant
    assert pregnancy.window_days == 99
    assert flag_codes(h) & {"diabetes_in_pregnancy", "multiple_pregnancy"} == set()
    assert "diabetes_in_pregnancy" in flag_codes(record(q("1558-6", 140, "mg/dL", 99), procedures=[delivered]))


def test_rules_that_need_the_gestational_age_are_not_applied():
    protein = Reading(codes.URINE_PROTEIN_ORDINAL, 0, value_string="3+")
    h = record(q(codes.SYSTOLIC, 150, "mm[Hg]", encounter=1), q(codes.DIASTOLIC, 100, "mm[Hg]", encounter=1), protein)
    found = flag_codes(h)
    assert "hypertension" in found  # needs no pregnancy at all
    assert "pre_eclampsia" not in found
    assert "post_term" not in found  # 20 weeks and 40 weeks cannot be judged
    assert not any(t.topic == "weight gain" for t in summarise(h).trends)


def test_a_medicine_to_avoid_from_20_weeks_is_warned_about_when_the_week_is_unknown():
    h = record()
    h.medications.append(Medication("5640", "Ibuprofen 400 MG Oral Tablet", "active", 3))
    assert any("NSAIDs" in w.message for w in safety_warnings(h, current_pregnancy(h), ""))


# --- the prompt and the page say so ------------------------------------------------------------------


def test_the_prompt_says_pregnant_gestational_age_not_recorded_and_what_was_not_applied():
    prompt = compose(record(q("1558-6", 210, "mg/dL", 2)), "What now?", TEMPLATE, count_tokens=words)
    assert "pregnant, gestational age not recorded (antenatal care encounter today)" in prompt.text
    assert "not pregnant" not in prompt.text
    assert "the last 42 weeks" in prompt.text
    assert "post-term" in prompt.text
    assert "Diabetes in pregnancy — fasting glucose 210 mg/dL in this pregnancy (2 days ago)" in prompt.text


AT = date(2025, 5, 2)


def who_style_bundle(pid: str):
    """A WHO antenatal test case: an 'ANC contact' encounter whose reason is the prenatal initial
    visit, two fetuses on ultrasound and a fasting glucose of 210 mg/dL; nothing dates the pregnancy."""
    visit = fb.encounter(
        f"{pid}-e", pid, start="2025-05-02T09:00:00Z", code="ANC.Contact", display="Antenatal care contact"
    )
    visit["type"][0]["coding"][0]["system"] = "http://smart.who.int/anc/CodeSystem/anc-custom-codes"
    visit["reasonCode"] = [
        {"coding": [{"system": fb.SNOMED, "code": "424441002", "display": "Prenatal initial visit"}]}
    ]
    fetuses = fb.observation(
        f"{pid}-fetuses",
        pid,
        f"{pid}-e",
        code="11878-6",
        when="2025-05-02T09:00:00Z",
        value={"valueQuantity": {"value": 2, "unit": "{#}"}},
    )
    glucose = fb.observation(
        f"{pid}-glucose",
        pid,
        f"{pid}-e",
        code="1558-6",
        when="2025-05-02T09:00:00Z",
        value={"valueQuantity": {"value": 210, "unit": "mg/dL"}},
    )
    return fb.bundle(fb.patient(pid), visit, fetuses, glucose)


def test_an_imported_who_antenatal_test_case_gets_every_pregnancy_rule(organisation):
    assert patient_import_bundle(organisation=organisation, bundle=who_style_bundle("who-1"), source="who").ok
    patient = organisation.patients.get(external_id="who-1")
    assert current_pregnancy(patient_history(patient, AT)).label == "gestational age not recorded"
    prompt = prompt_build(patient=patient, question="What now?", at=AT)
    assert "pregnant, gestational age not recorded" in prompt.text
    assert {"diabetes_in_pregnancy", "multiple_pregnancy", "pre_eclampsia_risk"} <= {
        f["code"] for f in prompt.risk_flags
    }
    # Eight weeks later nothing says she is still pregnant.
    later = prompt_build(patient=patient, question="What now?", at=AT + timedelta(days=EVIDENCE + 1))
    assert "not pregnant" in later.text
    assert "diabetes_in_pregnancy" not in {f["code"] for f in later.risk_flags}


def test_the_patient_page_says_pregnant_gestational_age_not_recorded(organisation, client_for, clinician):
    today = date.today()
    bundle = who_style_bundle("who-2")
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Encounter":
            resource["period"] = {"start": f"{today.isoformat()}T09:00:00Z", "end": f"{today.isoformat()}T09:30:00Z"}
        elif resource["resourceType"] == "Observation":
            resource["effectiveDateTime"] = f"{today.isoformat()}T09:00:00Z"
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="who").ok
    patient = organisation.patients.get(external_id="who-2")
    page = client_for(clinician).get(f"/patients/{patient.pk}/").content.decode()
    assert "Pregnant, gestational age not recorded" in page
    assert "Not pregnant" not in page
    assert "Diabetes in pregnancy" in page
    assert "Multiple pregnancy" in page


# --- she is not pregnant, and the prompt says how and when her pregnancy ended ------------------------


def test_at_the_follow_up_after_an_induced_termination_she_is_not_pregnant_and_the_prompt_says_why():
    h = record(
        visits=[antenatal_visit(0), antenatal_visit(28, "424441002")],
        diagnoses=[Diagnosis("72892002", "Normal pregnancy", 28, 0)],
        procedures=[ProcedureDone("714812005", "Induced termination of pregnancy", 14)],
    )
    pregnancy = current_pregnancy(h)
    assert not pregnancy.pregnant
    assert pregnancy.ended_days_ago == 14
    assert pregnancy.label == "not pregnant: her pregnancy ended 2 weeks ago (induced termination of pregnancy)"
    prompt = compose(h, "What do you recommend?", TEMPLATE, count_tokens=words).text
    assert "not pregnant: her pregnancy ended 2 weeks ago (induced termination of pregnancy)" in prompt


def test_a_miscarriage_diagnosed_at_this_visit_ends_the_pregnancy_today():
    h = record(diagnoses=[Diagnosis("19169002", "Miscarriage in first trimester", 0)])
    pregnancy = current_pregnancy(h)
    assert not pregnancy.pregnant
    assert pregnancy.ended == "today (miscarriage in first trimester)"


def test_a_pregnancy_that_ended_long_ago_is_not_mentioned():
    h = record(visits=[], procedures=[ProcedureDone("11466000", "Cesarean section", 400)])
    assert current_pregnancy(h).label == "not pregnant"
    assert current_pregnancy(h).ended == ""
