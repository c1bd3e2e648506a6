"""Clinical codes the method reads (docs/FHIR_CODES.md). Matched on code, never on display text."""

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
PMLM = "urn:pmlm:observation"

# --- observations ---------------------------------------------------------------------------
SYSTOLIC, DIASTOLIC = "8480-6", "8462-4"
BP_PANELS = frozenset({"85354-9", "55284-4"})
WEIGHT, PRE_PREGNANCY_WEIGHT, HEIGHT, BMI = "29463-7", "56077-1", "8302-2", "39156-5"
HAEMOGLOBIN = "718-7"
FASTING_GLUCOSE = frozenset({"1558-6", "1552-9"})
OGTT_1H, OGTT_2H = "1507-3", "1518-0"
RANDOM_GLUCOSE = frozenset({"2345-7", "2339-0"})
URINE_PROTEIN_ORDINAL, URINE_PROTEIN_MASS = "20454-5", "5804-0"
URINE_NITRITE, URINE_LEUKOCYTES, URINE_CULTURE = "5802-4", "5799-2", "630-4"
GBS = frozenset({"72607-5", "582-7"})
GESTATIONAL_AGE = frozenset({"49051-6", "11884-4", "18185-9"})
LAST_MENSTRUAL_PERIOD = "8665-2"
FETUS_COUNT = frozenset({"11878-6", "246435002"})
RH_TYPE, ABO_GROUP, ABO_RH = "10331-7", "883-9", "882-1"
HIV_TESTS = frozenset({"80387-4", "56888-1"})
SYPHILIS_TESTS = frozenset({"20507-0", "22587-0"})
HEPATITIS_B_TESTS = frozenset({"5196-1", "75410-1", "5195-3"})
HEPATITIS_C_TESTS = frozenset({"16128-1", "13955-0"})
SMOKING_STATUS = "72166-2"
ALCOHOL_DRINKS_PER_DAY, ALCOHOL_STATUS = "74013-4", "11331-6"
ILLICIT_DRUG_USE = "11343-1"
GRAVIDA, PARITY, PREVIOUS_CAESAREANS = "11996-6", "11977-6", "68497-7"
FETAL_HEART_RATE = frozenset({"55283-6", "57068-9"})
FUNDAL_HEIGHT = "11881-0"
CAFFEINE = "caffeine-mg-per-day"
SECONDHAND_SMOKE = "secondhand-smoke"
TB_SCREENING = "tb-screening"

# --- coded values -------------------------------------------------------------------------------
CURRENT_SMOKER = frozenset({"449868002", "428041000124106", "77176002", "65568007"})
NEVER_OR_EX_SMOKER = frozenset({"8517006", "266919005", "8392000", "405746006"})
RH_NEGATIVE, RH_POSITIVE = "165746003", "165747007"
PASSIVE_SMOKER = "43381005"
STREP_AGALACTIAE = "43492007"
ILLICIT_DRUG_USE_CODES = frozenset({"307052004", "361055000"})
# Alcohol status values that mean she does not drink now.
NON_DRINKER = frozenset({"105542008", "228274009", "82581004", "783261004", "228273003"})

POSITIVE_RESULTS = frozenset({"10828004", "260373001", "11214006", "52101004"})
NEGATIVE_RESULTS = frozenset({"260385009", "260415000", "131194007", "264868006", "2667000"})

# --- conditions and procedures ------------------------------------------------------------------
# Each list holds its parent concept (the code a record uses when it says no more) and the common
# descendants and synonyms recognised by code; tests/test_clinical_code_lists.py checks the parents.
PRE_ECLAMPSIA = frozenset({"398254007", "15938005", "198992004", "41114007", "67359005"})
GESTATIONAL_DIABETES = frozenset({"11687002", "40801000119106"})
DIABETES = frozenset(
    {
        "73211009",  # diabetes mellitus (parent)
        "44054006",
        "46635009",
        "190330002",
        "199223000",
        "237599002",
        "8801005",  # type 2, type 1, …, secondary
        # Complications that name the diabetes (Synthea records them beside it; an import may carry them alone).
        "127013003",
        "422034002",
        "368581000119106",
        "1551000119108",
        "1501000119109",
    }
)
HYPERTENSIVE_DISORDER = frozenset(
    {
        "38341003",
        "59621000",
        "1201005",
        "10725009",
        "78975002",
        "31992008",
        "48194001",
        "237279007",
        "16147005",
        "69909000",
        "64715009",
        "38481006",
    }
)
# Hypertension that predates the pregnancy (38341003 counts unless it began in this pregnancy; see risk.py).
CHRONIC_HYPERTENSION = frozenset(
    {"38341003", "59621000", "1201005", "10725009", "78975002", "31992008", "64715009", "38481006"}
)  # … hypertensive heart disease, hypertensive renal disease
ANAEMIA = frozenset({"271737000", "27342004", "87522002", "234347009"})
MULTIPLE_PREGNANCY = frozenset({"16356006", "65147003", "237239003", "45384004"})
HIV = frozenset({"86406008", "165816005", "62479008"})  # HIV infection, HIV positive, AIDS
SYPHILIS = frozenset({"76272004", "266127002"})
HEPATITIS_B = frozenset({"66071002", "61977001"})
HEPATITIS_C = frozenset({"50711007", "128302006"})
TUBERCULOSIS = frozenset({"56717001", "154283005"})
TOBACCO_USER = "110483000"
NORMAL_PREGNANCY = "72892002"
CAESAREAN = frozenset({"11466000", "274130007", "177141003"})
# Curated lists (descendants recognised by code): chronic kidney disease and autoimmune disease.
KIDNEY_DISEASE = frozenset(
    {
        "90708001",
        "709044004",  # kidney disease (parent), chronic kidney disease
        "431855005",
        "431856006",
        "433144002",
        "431857002",
        "433146000",
        "46177005",  # CKD stages 1–5, ESRD
        "42399005",
        "90688005",
        "236425005",
        "723190009",  # renal failure, chronic renal failure, chronic renal impairment
        "36171008",
        "52254009",
        "127013003",
        "38481006",  # glomerulonephritis, nephrotic, diabetic and hypertensive renal disease
        "698306007",  # awaiting transplantation of kidney
    }
)
AUTOIMMUNE_DISEASE = frozenset(
    {
        "85828009",  # autoimmune disease (parent)
        "55464009",
        "200936003",  # systemic lupus erythematosus
        "7188005",
        "26593000",  # antiphospholipid syndrome
        "69896004",  # rheumatoid arthritis
        "31996006",  # vasculitis
        "83901003",  # Sjögren
        "89155008",  # systemic sclerosis
    }
)

# Normal pregnancy, "patient currently pregnant", high-risk pregnancy, and the pregnancy complications above.
PREGNANCY_CONDITIONS = (
    frozenset({NORMAL_PREGNANCY, "77386006", "47200007"}) | PRE_ECLAMPSIA | GESTATIONAL_DIABETES | MULTIPLE_PREGNANCY
)
# Miscarriage (first trimester, any), tubal pregnancy, blighted ovum.
PREGNANCY_ENDING_CONDITIONS = frozenset({"19169002", "17369002", "79586000", "35999006"})
# Births, instrumental delivery (236974004) and induced termination of pregnancy (714812005).
PREGNANCY_ENDING_PROCEDURES = frozenset(
    {"11466000", "31208007", "177184002", "236973005", "177141003", "274130007", "236974004", "714812005"}
)
# How long after her pregnancy ended the prompt still says how and when it ended (post-abortion and
# postnatal care run six weeks; a woman seen within twelve is still being seen because of it).
RECENT_PREGNANCY_END_DAYS = 84
# Encounters (type or reason) of antenatal care: prenatal initial visit, prenatal visit, antenatal
# care, prenatal examination and care of mother.
PRENATAL_VISITS = frozenset({"424441002", "424619006", "424525001", "18114009"})
POSTNATAL_VISITS = frozenset({"169762003"})  # a postnatal visit: the pregnancy has ended
# Findings only a pregnancy produces. A 75 g OGTT with a 1-hour draw is the pregnancy protocol;
# fasting and 2-hour draws alone are also the ordinary diabetes test, so they prove nothing.
PREGNANCY_ONLY_FINDINGS = FETUS_COUNT | FETAL_HEART_RATE | {FUNDAL_HEIGHT, OGTT_1H}
MAX_PREGNANCY_DAYS = 44 * 7

# A pregnancy with no date (antenatal care or pregnancy-only findings, but no gestational age, last
# menstrual period or pregnancy condition): the evidence must be recent — at most the longest gap
# WHO recommends between antenatal contacts (8 weeks, 12 → 20 weeks) — and a value counts as "in
# this pregnancy" for 42 weeks back (a pregnancy rarely goes past 42 weeks, so anything older
# predates it), never before an event that ended the previous pregnancy.
UNDATED_PREGNANCY_EVIDENCE_DAYS = 8 * 7
UNDATED_PREGNANCY_LOOKBACK_DAYS = 42 * 7
