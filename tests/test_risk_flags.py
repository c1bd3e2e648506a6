"""Every risk rule, just below and just above each threshold, in every accepted unit and value form."""

import pytest

from prompting.pmlm import codes
from prompting.pmlm.history import Diagnosis, Habit, PatientHistory, ProcedureDone, Reading
from prompting.pmlm.risk import risk_flags
from prompting.pmlm.state import current_pregnancy

PREGNANT_24_WEEKS = Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", onset_days_ago=24 * 7)


def history(*readings, diagnoses=(), procedures=(), habits=(), pregnant=True, lmp=None):
    return PatientHistory(
        age_years=30,
        readings=list(readings),
        diagnoses=([PREGNANT_24_WEEKS] if pregnant else []) + list(diagnoses),
        procedures=list(procedures),
        habits=list(habits),
        lmp_days_ago=lmp,
    )


def q(code, value, unit="", days_ago=3, **kw):
    return Reading(code=code, days_ago=days_ago, quantity=value, unit=unit, **kw)


def coded(code, value_code, display="", days_ago=3, **kw):
    return Reading(code=code, days_ago=days_ago, value_code=value_code, value_display=display, **kw)


def text(code, value, days_ago=3):
    return Reading(code=code, days_ago=days_ago, value_string=value)


def boolean(code, value, days_ago=3):
    return Reading(code=code, days_ago=days_ago, value_boolean=value)


def bp(systolic, diastolic, days_ago=3, encounter=1, sequence=0):
    return [
        q(codes.SYSTOLIC, systolic, "mm[Hg]", days_ago, encounter=encounter, sequence=sequence),
        q(codes.DIASTOLIC, diastolic, "mm[Hg]", days_ago, encounter=encounter, sequence=sequence),
    ]


def flags(h):
    return {f.code for f in risk_flags(h)}


def flag(h, code):
    return next((f for f in risk_flags(h) if f.code == code), None)


# --- BMI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bmi, expected",
    [
        (18.4, {"underweight"}),
        (18.5, set()),
        (24.9, set()),
        (25.0, {"overweight"}),
        (29.9, {"overweight"}),
        (30.0, {"obese"}),
    ],
)
def test_bmi_categories_at_their_thresholds(bmi, expected):
    assert flags(history(q(codes.BMI, bmi, "kg/m2", days_ago=400))) & {"underweight", "overweight", "obese"} == expected


def test_pre_pregnancy_weight_and_height_come_first_in_any_unit():
    # 77 kg / 1.6 m² = 30.1; in pounds and inches as well
    h = history(q(codes.PRE_PREGNANCY_WEIGHT, 77, "kg"), q(codes.HEIGHT, 1.6, "m"), q(codes.BMI, 22, "kg/m2"))
    assert "obese" in flags(h)
    assert "pre-pregnancy weight" in flag(h, "obese").evidence
    h = history(q(codes.PRE_PREGNANCY_WEIGHT, 169.8, "[lb_av]"), q(codes.HEIGHT, 62.99, "[in_i]"))
    assert "obese" in flags(h)
    h = history(q(codes.PRE_PREGNANCY_WEIGHT, 76000, "g"), q(codes.HEIGHT, 160, "cm"))
    assert "obese" not in flags(h)
    assert "overweight" in flags(h)


def test_weight_and_height_are_the_last_resort_and_prefer_before_pregnancy():
    h = history(
        q(codes.WEIGHT, 60, "kg", days_ago=400),
        q(codes.WEIGHT, 80, "kg", days_ago=3),
        q(codes.HEIGHT, 165, "cm", days_ago=400),
    )
    assert flags(h) & {"overweight", "obese"} == set()  # 60 kg before pregnancy: BMI 22
    h = history(q(codes.WEIGHT, 80, "kg", days_ago=400), q(codes.HEIGHT, 165, "cm", days_ago=400), pregnant=False)
    assert "overweight" in flags(h)


# --- tobacco, smoke, substances, caffeine -------------------------------------------------------


@pytest.mark.parametrize(
    "value_code, raised",
    [
        ("449868002", True),
        ("428041000124106", True),
        ("77176002", True),
        ("8517006", False),
        ("266919005", False),
    ],
)
def test_tobacco_use_follows_the_latest_smoking_status(value_code, raised):
    assert ("tobacco_use" in flags(history(coded(codes.SMOKING_STATUS, value_code)))) is raised


def test_a_smoker_who_quit_later_is_not_flagged():
    h = history(
        coded(codes.SMOKING_STATUS, "449868002", days_ago=300), coded(codes.SMOKING_STATUS, "8517006", days_ago=5)
    )
    assert "tobacco_use" not in flags(h)


def test_a_tobacco_user_finding_raises_tobacco_use():
    assert "tobacco_use" in flags(history(diagnoses=[Diagnosis(codes.TOBACCO_USER, "Tobacco user", 100)]))


def test_a_reported_smoking_habit_raises_tobacco_use():
    h = history(habits=[Habit("tobacco", "Tobacco smoking", "daily smoker", 10, 8, "cigarettes/day")])
    assert "tobacco_use" in flags(h)
    h = history(habits=[Habit("tobacco", "Tobacco smoking", "stopped smoking", 10, 0, "cigarettes/day")])
    assert "tobacco_use" not in flags(h)


@pytest.mark.parametrize(
    "reading, raised",
    [
        (boolean(codes.SECONDHAND_SMOKE, True), True),
        (boolean(codes.SECONDHAND_SMOKE, False), False),
        (coded(codes.SECONDHAND_SMOKE, codes.PASSIVE_SMOKER), True),
        (text(codes.SECONDHAND_SMOKE, "yes"), True),
        (text(codes.SECONDHAND_SMOKE, "no"), False),
    ],
)
def test_secondhand_smoke_in_every_value_form(reading, raised):
    assert ("secondhand_smoke" in flags(history(reading))) is raised


@pytest.mark.parametrize(
    "reading, raised",
    [
        (q(codes.ALCOHOL_DRINKS_PER_DAY, 0, "{drinks}/d"), False),
        (q(codes.ALCOHOL_DRINKS_PER_DAY, 0.5, "{drinks}/d"), True),
        (coded(codes.ALCOHOL_STATUS, "219006", "Current drinker"), True),
        (coded(codes.ALCOHOL_STATUS, "105542008", "Non-drinker"), False),
        (text(codes.ALCOHOL_STATUS, "never"), False),
        (coded(codes.ILLICIT_DRUG_USE, "307052004", "Illicit drug use"), True),
        (text(codes.ILLICIT_DRUG_USE, "negative"), False),
    ],
)
def test_substance_use_in_every_value_form(reading, raised):
    assert ("substance_use" in flags(history(reading))) is raised


def test_substance_use_counts_the_last_12_months_or_the_current_pregnancy():
    assert "substance_use" in flags(history(q(codes.ALCOHOL_DRINKS_PER_DAY, 1, days_ago=365), pregnant=False))
    assert "substance_use" not in flags(history(q(codes.ALCOHOL_DRINKS_PER_DAY, 1, days_ago=366), pregnant=False))


@pytest.mark.parametrize("mg, raised", [(300, False), (301, True)])
def test_high_caffeine_above_300_mg(mg, raised):
    assert (
        "high_caffeine"
        in flags(history(Reading(code=codes.CAFFEINE, days_ago=2, quantity=mg, unit="mg/d", system=codes.PMLM)))
    ) is raised


# --- anaemia ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, unit, expected",
    [
        (11.0, "g/dL", set()),
        (10.9, "g/dL", {"anaemia"}),
        (7.0, "g/dL", {"anaemia"}),
        (6.9, "g/dL", {"anaemia", "severe_anaemia"}),
        (110, "g/L", set()),
        (109, "g/L", {"anaemia"}),
        (69, "g/L", {"anaemia", "severe_anaemia"}),
        (6.83, "mmol/L", set()),
        (6.8, "mmol/L", {"anaemia"}),
        (4.3, "mmol/L", {"anaemia", "severe_anaemia"}),
    ],
)
def test_anaemia_thresholds_in_each_unit(value, unit, expected):
    assert flags(history(q(codes.HAEMOGLOBIN, value, unit))) & {"anaemia", "severe_anaemia"} == expected


# --- blood pressure --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "systolic, diastolic, expected",
    [
        (139, 89, set()),
        (140, 80, {"hypertension"}),
        (120, 90, {"hypertension"}),
        (159, 109, {"hypertension"}),
        (160, 100, {"hypertension", "severe_hypertension"}),
        (150, 110, {"hypertension", "severe_hypertension"}),
    ],
)
def test_hypertension_thresholds(systolic, diastolic, expected):
    assert (
        flags(history(*bp(systolic, diastolic), pregnant=False)) & {"hypertension", "severe_hypertension"} == expected
    )


def test_the_repeat_reading_at_the_same_visit_decides():
    first, repeat = bp(150, 95, sequence=0), bp(132, 84, sequence=1)
    assert "hypertension" not in flags(history(*first, *repeat))
    assert "hypertension" in flags(history(*bp(132, 84, sequence=0), *bp(150, 95, sequence=1)))
    assert (
        "repeat reading" in flag(history(*bp(132, 84, sequence=0), *bp(150, 95, sequence=1)), "hypertension").evidence
    )


def test_an_older_high_reading_does_not_count_when_the_latest_is_normal():
    assert "hypertension" not in flags(
        history(*bp(150, 95, days_ago=30, encounter=1), *bp(120, 80, days_ago=2, encounter=2))
    )


def test_a_hypertensive_disorder_condition_raises_hypertension():
    assert "hypertension" in flags(
        history(diagnoses=[Diagnosis("59621000", "Essential hypertension", 900)], pregnant=False)
    )
    assert "hypertension" not in flags(
        history(diagnoses=[Diagnosis("59621000", "Essential hypertension", 900, abated_days_ago=100)], pregnant=False)
    )


# --- pre-eclampsia ----------------------------------------------------------------------------------


def protein(value, days_ago=3):
    return text(codes.URINE_PROTEIN_ORDINAL, value, days_ago)


@pytest.mark.parametrize(
    "urine, raised",
    [
        (protein("1+"), False),
        (protein("2+"), True),
        (protein("++"), True),
        (protein("trace"), False),
        (protein("3+"), True),
        (q(codes.URINE_PROTEIN_MASS, 99, "mg/dL"), False),
        (q(codes.URINE_PROTEIN_MASS, 100, "mg/dL"), True),
    ],
)
def test_pre_eclampsia_needs_hypertension_after_20_weeks_and_protein_of_2_plus(urine, raised):
    assert ("pre_eclampsia" in flags(history(*bp(145, 92), urine))) is raised


def test_pre_eclampsia_is_not_raised_before_20_weeks():
    early = Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", onset_days_ago=19 * 7 + 6 + 3)  # 19+6 at the reading
    at_20 = Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", onset_days_ago=20 * 7 + 3)
    assert "pre_eclampsia" not in flags(PatientHistory(30, readings=[*bp(145, 92), protein("2+")], diagnoses=[early]))
    assert "pre_eclampsia" in flags(PatientHistory(30, readings=[*bp(145, 92), protein("2+")], diagnoses=[at_20]))


def test_a_pre_eclampsia_condition_in_this_pregnancy_raises_it_but_one_from_the_past_is_a_risk_factor():
    current = Diagnosis("398254007", "Preeclampsia", onset_days_ago=10)
    past = Diagnosis("398254007", "Preeclampsia", onset_days_ago=900, abated_days_ago=880)
    assert "pre_eclampsia" in flags(history(diagnoses=[current]))
    assert flags(history(diagnoses=[past])) & {"pre_eclampsia", "pre_eclampsia_risk"} == {"pre_eclampsia_risk"}


@pytest.mark.parametrize(
    "diagnosis",
    [
        Diagnosis("59621000", "Essential hypertension", 1000),
        Diagnosis("44054006", "Diabetes type 2", 1000),
        Diagnosis("709044004", "Chronic kidney disease", 1000),
        Diagnosis("55464009", "Systemic lupus erythematosus", 1000),
        Diagnosis("65147003", "Twin pregnancy", 60),
    ],
)
def test_each_pre_eclampsia_risk_factor(diagnosis):
    assert "pre_eclampsia_risk" in flags(history(diagnoses=[diagnosis]))


def test_pregnancy_flags_are_not_raised_when_she_is_not_pregnant():
    h = history(
        *bp(150, 95),
        protein("3+"),
        q("1558-6", 130, "mg/dL"),
        diagnoses=[Diagnosis("59621000", "Essential hypertension", 1000)],
        pregnant=False,
    )
    assert (
        flags(h)
        & {
            "pre_eclampsia",
            "pre_eclampsia_risk",
            "gestational_diabetes",
            "diabetes_in_pregnancy",
            "post_term",
            "multiple_pregnancy",
        }
        == set()
    )
    assert "hypertension" in flags(h)


# --- glucose ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "code, value, unit, expected",
    [
        ("1558-6", 91, "mg/dL", set()),
        ("1558-6", 92, "mg/dL", {"gestational_diabetes"}),
        ("1558-6", 125, "mg/dL", {"gestational_diabetes"}),
        ("1558-6", 126, "mg/dL", {"diabetes_in_pregnancy"}),
        ("1552-9", 5.1, "mmol/L", {"gestational_diabetes"}),
        ("1552-9", 5.0, "mmol/L", set()),
        ("1558-6", 7.0, "mmol/L", {"diabetes_in_pregnancy"}),
        ("1558-6", 6.9, "mmol/L", {"gestational_diabetes"}),
        ("1507-3", 179, "mg/dL", set()),
        ("1507-3", 180, "mg/dL", {"gestational_diabetes"}),
        ("1507-3", 10.0, "mmol/L", {"gestational_diabetes"}),
        ("1518-0", 152, "mg/dL", set()),
        ("1518-0", 153, "mg/dL", {"gestational_diabetes"}),
        ("1518-0", 199, "mg/dL", {"gestational_diabetes"}),
        ("1518-0", 200, "mg/dL", {"diabetes_in_pregnancy"}),
        ("1518-0", 8.5, "mmol/L", {"gestational_diabetes"}),
        ("1518-0", 11.1, "mmol/L", {"diabetes_in_pregnancy"}),
        ("2345-7", 199, "mg/dL", set()),
        ("2345-7", 200, "mg/dL", {"diabetes_in_pregnancy"}),
        ("2339-0", 200, "mg/dL", {"diabetes_in_pregnancy"}),
    ],
)
def test_glucose_thresholds_in_the_current_pregnancy(code, value, unit, expected):
    assert flags(history(q(code, value, unit))) & {"gestational_diabetes", "diabetes_in_pregnancy"} == expected


def test_glucose_from_before_the_pregnancy_does_not_count():
    assert (
        flags(history(q("1558-6", 130, "mg/dL", days_ago=24 * 7 + 10)))
        & {"gestational_diabetes", "diabetes_in_pregnancy"}
        == set()
    )


def test_pre_existing_diabetes_is_diabetes_in_pregnancy():
    assert "diabetes_in_pregnancy" in flags(
        history(diagnoses=[Diagnosis("44054006", "Diabetes mellitus type 2", 2000)])
    )


# --- urine -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "readings, raised",
    [
        ([coded(codes.URINE_CULTURE, "112283007", "Escherichia coli")], True),
        ([text(codes.URINE_CULTURE, "no growth")], False),
        ([text(codes.URINE_CULTURE, "positive")], True),
        ([coded(codes.URINE_NITRITE, "10828004", "Positive")], True),
        ([boolean(codes.URINE_NITRITE, True)], True),
        ([text(codes.URINE_NITRITE, "negative")], False),
        ([text(codes.URINE_LEUKOCYTES, "1+")], False),
        ([text(codes.URINE_LEUKOCYTES, "2+")], True),
        ([text(codes.URINE_LEUKOCYTES, "2+"), text(codes.URINE_NITRITE, "negative")], False),
        ([text(codes.URINE_LEUKOCYTES, "++")], True),
    ],
)
def test_urinary_infection(readings, raised):
    assert ("urinary_infection" in flags(history(*readings))) is raised


@pytest.mark.parametrize(
    "reading, raised",
    [
        (coded("72607-5", "260373001", "Detected"), True),
        (coded("72607-5", "260415000", "Not detected"), False),
        (text("582-7", "positive"), True),
        (boolean("582-7", False), False),
        (coded(codes.URINE_CULTURE, codes.STREP_AGALACTIAE, "Streptococcus agalactiae"), True),
    ],
)
def test_group_b_streptococcus(reading, raised):
    assert ("gbs_positive" in flags(history(reading))) is raised


@pytest.mark.parametrize(
    "reading, raised",
    [
        (coded(codes.RH_TYPE, codes.RH_NEGATIVE, "RhD negative"), True),
        (coded(codes.RH_TYPE, codes.RH_POSITIVE, "RhD positive"), False),
        (text(codes.RH_TYPE, "negative"), True),
        (coded(codes.ABO_RH, "278152006", "Blood group O Rh(D) negative"), True),
    ],
)
def test_rh_negative(reading, raised):
    assert ("rh_negative" in flags(history(reading, pregnant=False))) is raised


# --- gestational age ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("days, raised", [(40 * 7, False), (40 * 7 + 1, True)])
def test_post_term_after_40_weeks(days, raised):
    h = PatientHistory(30, diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", onset_days_ago=days)])
    assert ("post_term" in flags(h)) is raised


def test_gestational_age_comes_from_an_observation_carried_forward_then_lmp_then_the_episode():
    ga = q("49051-6", 38, "wk", days_ago=15)  # 38 weeks 15 days ago: 40+1 now
    assert current_pregnancy(history(ga)).gestational_days == 38 * 7 + 15
    assert "post_term" in flags(history(ga))
    in_days = q("49051-6", 200, "d", days_ago=0)
    assert current_pregnancy(history(in_days)).gestational_days == 200
    assert current_pregnancy(history(lmp=100)).gestational_days == 100
    assert current_pregnancy(history()).gestational_days == 24 * 7


def test_a_finished_pregnancy_is_not_current():
    ended = Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", onset_days_ago=300, abated_days_ago=20)
    assert not current_pregnancy(PatientHistory(30, diagnoses=[ended])).pregnant
    delivered = PatientHistory(
        30,
        diagnoses=[Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 290)],
        procedures=[ProcedureDone("11466000", "Caesarean section", 5)],
    )
    assert not current_pregnancy(delivered).pregnant


@pytest.mark.parametrize(
    "reading, raised",
    [
        (q("11878-6", 2, "{#}"), True),
        (q("11878-6", 1, "{#}"), False),
    ],
)
def test_multiple_pregnancy(reading, raised):
    assert ("multiple_pregnancy" in flags(history(reading))) is raised


def test_a_twin_pregnancy_condition_is_a_multiple_pregnancy():
    assert "multiple_pregnancy" in flags(history(diagnoses=[Diagnosis("65147003", "Twin pregnancy", 60)]))


@pytest.mark.parametrize(
    "h, raised",
    [
        (history(q(codes.PREVIOUS_CAESAREANS, 1, "{#}")), True),
        (history(q(codes.PREVIOUS_CAESAREANS, 0, "{#}")), False),
        (history(procedures=[ProcedureDone("11466000", "Cesarean section", 800)]), True),
    ],
)
def test_previous_caesarean(h, raised):
    assert ("previous_c_section" in flags(h)) is raised


# --- infections ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag_code, test_code, positive, negative",
    [
        (
            "hiv_positive",
            "80387-4",
            coded("80387-4", "11214006", "Reactive"),
            coded("80387-4", "131194007", "Non-reactive"),
        ),
        ("hiv_positive", "56888-1", text("56888-1", "reactive"), text("56888-1", "non-reactive")),
        (
            "syphilis_positive",
            "20507-0",
            coded("20507-0", "11214006", "Reactive"),
            coded("20507-0", "131194007", "Non-reactive"),
        ),
        ("syphilis_positive", "22587-0", boolean("22587-0", True), boolean("22587-0", False)),
        (
            "hepatitis_b_positive",
            "5196-1",
            coded("5196-1", "10828004", "Positive"),
            coded("5196-1", "260385009", "Negative"),
        ),
        ("hepatitis_b_positive", "75410-1", text("75410-1", "positive"), text("75410-1", "negative")),
        ("hepatitis_c_positive", "16128-1", text("16128-1", "Positive"), text("16128-1", "Negative")),
        (
            "tb_screening_positive",
            codes.TB_SCREENING,
            text(codes.TB_SCREENING, "positive"),
            text(codes.TB_SCREENING, "negative"),
        ),
    ],
)
def test_infection_screening_results(flag_code, test_code, positive, negative):
    assert flag_code in flags(history(positive, pregnant=False))
    assert flag_code not in flags(history(negative, pregnant=False))


def test_an_hiv_condition_raises_hiv_positive():
    assert "hiv_positive" in flags(history(diagnoses=[Diagnosis("86406008", "HIV infection", 1000)], pregnant=False))


def test_every_flag_carries_its_evidence_with_a_relative_date():
    h = history(*bp(150, 95, days_ago=3), q(codes.HAEMOGLOBIN, 9.5, "g/dL", days_ago=10), protein("3+"))
    for f in risk_flags(h):
        assert f.evidence
        assert "ago" in f.evidence
        assert not any(ch.isdigit() and "-" in f.evidence[:4] for ch in f.evidence[:1])
    assert "150/95 mmHg" in flag(h, "hypertension").evidence
    assert "9.5 g/dL" in flag(h, "anaemia").evidence


def test_adult_bmi_cut_offs_are_not_applied_to_a_child_who_is_not_pregnant():
    child = history(q(codes.BMI, 15.0, "kg/m2"), pregnant=False)
    child.age_years = 9
    assert "underweight" not in flags(child)
    pregnant_teenager = history(q(codes.BMI, 17.0, "kg/m2", days_ago=400))
    pregnant_teenager.age_years = 16
    assert "underweight" in flags(pregnant_teenager)
