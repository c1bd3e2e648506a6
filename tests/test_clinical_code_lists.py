"""Curated code lists recognise their own parent concept and its common synonyms.

A record that says no more than "autoimmune disease" or "kidney disease" uses the parent concept
itself; a list of descendants that forgets it silently drops the risk factor. Every curated list
of conditions is named here with its SNOMED CT parent: a new list must be added too.
"""

import pytest

from prompting.pmlm import codes
from prompting.pmlm.history import Diagnosis, PatientHistory
from prompting.pmlm.risk import risk_flags

# list name → (parent concept, synonyms and common descendants a record may carry instead)
CURATED = {
    "KIDNEY_DISEASE": (
        "90708001",
        {  # kidney disease
            "709044004",  # chronic kidney disease
            "46177005",  # end-stage renal disease
            "42399005",  # renal failure syndrome
            "90688005",  # chronic renal failure syndrome
            "38481006",  # hypertensive renal disease
            "127013003",  # disorder of kidney due to diabetes mellitus
        },
    ),
    "AUTOIMMUNE_DISEASE": (
        "85828009",
        {  # autoimmune disease
            "55464009",  # systemic lupus erythematosus
            "69896004",  # rheumatoid arthritis
        },
    ),
    "HYPERTENSIVE_DISORDER": (
        "38341003",
        {  # hypertensive disorder, systemic arterial
            "59621000",  # essential hypertension
            "1201005",  # benign essential hypertension
            "31992008",  # secondary hypertension
            "48194001",  # pregnancy-induced hypertension
            "64715009",  # hypertensive heart disease
            "38481006",  # hypertensive renal disease
        },
    ),
    "CHRONIC_HYPERTENSION": ("38341003", {"59621000", "1201005", "31992008", "64715009", "38481006"}),
    "DIABETES": (
        "73211009",
        {  # diabetes mellitus
            "44054006",  # type 2
            "46635009",  # type 1
            "8801005",  # secondary diabetes mellitus
            "127013003",  # disorder of kidney due to diabetes mellitus
        },
    ),
    "GESTATIONAL_DIABETES": ("11687002", set()),
    "PRE_ECLAMPSIA": ("398254007", {"15938005"}),  # pre-eclampsia, eclampsia
    "ANAEMIA": ("271737000", {"87522002"}),  # anaemia, iron deficiency anaemia
    "MULTIPLE_PREGNANCY": ("16356006", {"65147003"}),  # multiple pregnancy, twin pregnancy
    "HIV": ("86406008", {"165816005", "62479008"}),  # HIV infection, HIV positive, AIDS
    "SYPHILIS": ("76272004", set()),
    "HEPATITIS_B": ("66071002", {"61977001"}),  # viral hepatitis B, chronic hepatitis B
    "HEPATITIS_C": ("50711007", {"128302006"}),  # viral hepatitis C, chronic hepatitis C
    "TUBERCULOSIS": ("56717001", {"154283005"}),  # tuberculosis, pulmonary tuberculosis
    "PREGNANCY_CONDITIONS": ("77386006", {"72892002"}),  # pregnant, normal pregnancy
    "PREGNANCY_ENDING_CONDITIONS": ("17369002", {"19169002"}),  # miscarriage, miscarriage in first trimester
}


@pytest.mark.parametrize("name", sorted(CURATED))
def test_every_curated_list_holds_its_parent_concept(name):
    parent, _ = CURATED[name]
    assert parent in getattr(codes, name), f"codes.{name} lacks its parent concept {parent}"


@pytest.mark.parametrize("name", sorted(CURATED))
def test_every_curated_list_holds_the_common_synonyms(name):
    _, synonyms = CURATED[name]
    assert synonyms - getattr(codes, name) == set(), f"codes.{name} lacks {sorted(synonyms - getattr(codes, name))}"


# Sets of codes that are not lists of conditions: observations, coded values, procedures, encounters.
NOT_CONDITION_LISTS = {
    "BP_PANELS",
    "FASTING_GLUCOSE",
    "RANDOM_GLUCOSE",
    "GBS",
    "GESTATIONAL_AGE",
    "FETUS_COUNT",
    "HIV_TESTS",
    "SYPHILIS_TESTS",
    "HEPATITIS_B_TESTS",
    "HEPATITIS_C_TESTS",
    "FETAL_HEART_RATE",
    "CURRENT_SMOKER",
    "NEVER_OR_EX_SMOKER",
    "ILLICIT_DRUG_USE_CODES",
    "NON_DRINKER",
    "POSITIVE_RESULTS",
    "NEGATIVE_RESULTS",
    "CAESAREAN",
    "PREGNANCY_ENDING_PROCEDURES",
    "PRENATAL_VISITS",
    "POSTNATAL_VISITS",
    "PREGNANCY_ONLY_FINDINGS",
}


def test_every_list_of_conditions_is_checked_here():
    sets = {name for name, value in vars(codes).items() if name.isupper() and isinstance(value, frozenset)}
    unchecked = sets - set(CURATED) - NOT_CONDITION_LISTS
    assert unchecked == set(), (
        f"name the parent concept of {sorted(unchecked)} in CURATED (or list it as not conditions)"
    )


@pytest.mark.parametrize(
    "code, factor",
    [
        ("85828009", "autoimmune disease"),
        ("90708001", "kidney disease"),
        ("42399005", "kidney disease"),
        ("73211009", "pre-existing diabetes"),
        ("38341003", "chronic hypertension"),
        ("64715009", "chronic hypertension"),
    ],
)
def test_a_woman_recorded_with_exactly_the_parent_concept_gets_the_pre_eclampsia_risk_flag(code, factor):
    h = PatientHistory(
        age_years=32,
        diagnoses=[
            Diagnosis(code, "", onset_days_ago=3 * 365),
            Diagnosis(codes.NORMAL_PREGNANCY, "Normal pregnancy", 16 * 7),
        ],
    )
    flag = next((f for f in risk_flags(h) if f.code == "pre_eclampsia_risk"), None)
    assert flag is not None
    assert factor in flag.evidence
