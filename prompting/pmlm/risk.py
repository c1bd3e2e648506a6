"""Risk flags following the WHO antenatal-care recommendations (docs/FHIR_CODES.md), with evidence.

Each rule reads the latest value unless it says otherwise; a rule about the current pregnancy
only looks at what was recorded since it started (for a pregnancy the record proves but does not
date, the last 42 weeks: `state.undated_pregnancy`). Flags that need pregnancy data are not
raised for a patient who is not pregnant; flags that need the gestational age
(GESTATIONAL_AGE_RULES) are not raised while it is not recorded. Evidence names the value, unit
and how long before the consultation it was recorded — never a date.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import codes
from .history import PatientHistory, Reading
from .state import Bmi, Pregnancy, ago, blood_pressures, body_mass_index, current_pregnancy
from .units import dipstick_grade, qualitative, to_g_dl, to_mg_dl

SUBSTANCE_WINDOW_DAYS = 365
# What cannot be judged while she is pregnant but her gestational age is not recorded.
GESTATIONAL_AGE_RULES = ("pre-eclampsia from blood pressure and proteinuria after 20 weeks", "post-term")


@dataclass(frozen=True)
class RiskFlag:
    code: str
    label: str
    evidence: str

    def as_dict(self) -> dict:
        return {"code": self.code, "label": self.label, "evidence": self.evidence}


LABELS = {
    "underweight": "Underweight (BMI < 18.5)",
    "overweight": "Overweight (BMI 25–29.9)",
    "obese": "Obesity (BMI ≥ 30)",
    "tobacco_use": "Tobacco use",
    "secondhand_smoke": "Second-hand smoke exposure",
    "substance_use": "Alcohol or substance use",
    "high_caffeine": "High caffeine intake (> 300 mg/day)",
    "anaemia": "Anaemia (Hb < 11 g/dL)",
    "severe_anaemia": "Severe anaemia (Hb < 7 g/dL)",
    "hypertension": "Hypertension (≥ 140/90 mmHg)",
    "severe_hypertension": "Severe hypertension (≥ 160/110 mmHg)",
    "pre_eclampsia": "Pre-eclampsia",
    "pre_eclampsia_risk": "High risk of pre-eclampsia (WHO: low-dose aspirin from 12 weeks)",
    "gestational_diabetes": "Gestational diabetes",
    "diabetes_in_pregnancy": "Diabetes in pregnancy",
    "urinary_infection": "Urinary tract infection / asymptomatic bacteriuria",
    "gbs_positive": "Group B streptococcus positive",
    "rh_negative": "RhD negative",
    "post_term": "Post-term pregnancy (> 40 weeks)",
    "multiple_pregnancy": "Multiple pregnancy",
    "previous_c_section": "Previous caesarean section",
    "hiv_positive": "HIV positive",
    "syphilis_positive": "Syphilis positive",
    "hepatitis_b_positive": "Hepatitis B positive",
    "hepatitis_c_positive": "Hepatitis C positive",
    "tb_screening_positive": "Tuberculosis screening positive",
}
RULE_ORDER = list(LABELS)


def _reading_text(r: Reading) -> str:
    if r.quantity is not None:
        return f"{r.quantity:g} {r.unit}".strip()
    return (
        r.value_display
        or r.value_string
        or r.value_code
        or ("yes" if r.value_boolean else "no" if r.value_boolean is False else "")
    )


class _Context:
    def __init__(self, h: PatientHistory, pregnancy: Pregnancy):
        self.h = h
        self.pregnancy = pregnancy
        self.flags: dict[str, RiskFlag] = {}

    def raise_flag(self, code: str, evidence: str):
        if code not in self.flags:
            self.flags[code] = RiskFlag(code, LABELS[code], evidence)

    def in_pregnancy(self, readings: list[Reading]) -> list[Reading]:
        return [r for r in readings if self.pregnancy.started_within(r.days_ago)]

    def condition(self, code_set, *, current_pregnancy_only=False, active_only=True):
        for d in self.h.diagnosed(code_set):
            if active_only and not d.active:
                continue
            if current_pregnancy_only and not self.pregnancy.started_within(d.onset_days_ago):
                continue
            return d
        return None


def risk_flags(h: PatientHistory, pregnancy: Pregnancy | None = None) -> list[RiskFlag]:
    pregnancy = pregnancy or current_pregnancy(h)
    ctx = _Context(h, pregnancy)
    for rule in RULES:
        rule(ctx)
    return sorted(ctx.flags.values(), key=lambda f: RULE_ORDER.index(f.code))


# --- rules -----------------------------------------------------------------------------------------


def _bmi(ctx: _Context):
    if ctx.h.age_years is not None and ctx.h.age_years < 18 and not ctx.pregnancy.pregnant:
        return  # adult cut-offs do not apply to children (BMI-for-age would)
    bmi: Bmi | None = body_mass_index(ctx.h, ctx.pregnancy)
    if bmi is None:
        return
    evidence = f"BMI {bmi.value:.1f} kg/m2 ({bmi.basis}, {ago(bmi.days_ago)})"
    if bmi.value < 18.5:
        ctx.raise_flag("underweight", evidence)
    elif bmi.value >= 30:
        ctx.raise_flag("obese", evidence)
    elif bmi.value >= 25:
        ctx.raise_flag("overweight", evidence)


def _tobacco(ctx: _Context):
    status = ctx.h.latest(codes.SMOKING_STATUS)
    if status and status.value_code in codes.CURRENT_SMOKER:
        ctx.raise_flag(
            "tobacco_use", f"smoking status: {status.value_display or status.value_code} ({ago(status.days_ago)})"
        )
        return
    for r in ctx.h.of(codes.SMOKING_STATUS, codes.TOBACCO_USER):
        if r.code == codes.TOBACCO_USER or r.value_code == codes.TOBACCO_USER:
            ctx.raise_flag("tobacco_use", f"tobacco user ({ago(r.days_ago)})")
            return
    user = ctx.condition({codes.TOBACCO_USER})
    if user:
        ctx.raise_flag("tobacco_use", f"condition: {user.display or 'tobacco user'} ({ago(user.onset_days_ago)})")
        return
    habit = _latest_habit(ctx.h, "tobacco")
    if habit and (habit.quantity or 0) > 0 and (not status or habit.days_ago <= status.days_ago):
        ctx.raise_flag("tobacco_use", f"reports {habit.value}, {habit.quantity:g} {habit.unit} ({ago(habit.days_ago)})")


def _secondhand(ctx: _Context):
    for r in ctx.h.of(codes.SECONDHAND_SMOKE):
        exposed = r.value_code == codes.PASSIVE_SMOKER or qualitative(
            r.value_code, r.value_string, r.value_boolean, r.value_display
        )
        if exposed:
            ctx.raise_flag("secondhand_smoke", f"second-hand smoke exposure recorded ({ago(r.days_ago)})")
        return
    for r in ctx.h.readings:
        if r.value_code == codes.PASSIVE_SMOKER:
            ctx.raise_flag("secondhand_smoke", f"passive smoker ({ago(r.days_ago)})")
            return
    passive = ctx.condition({codes.PASSIVE_SMOKER})
    if passive:
        ctx.raise_flag("secondhand_smoke", f"condition: passive smoker ({ago(passive.onset_days_ago)})")
        return
    habit = _latest_habit(ctx.h, "secondhand_smoke")
    if habit and habit.value not in ("no exposure", "none", "no"):
        ctx.raise_flag("secondhand_smoke", f"reports {habit.value} ({ago(habit.days_ago)})")


def _within_substance_window(ctx: _Context, days_ago: int) -> bool:
    return days_ago <= SUBSTANCE_WINDOW_DAYS or ctx.pregnancy.started_within(days_ago)


def _substances(ctx: _Context):
    for r in ctx.h.of(codes.ALCOHOL_DRINKS_PER_DAY):
        if r.quantity is not None and r.quantity > 0 and _within_substance_window(ctx, r.days_ago):
            ctx.raise_flag("substance_use", f"alcohol {r.quantity:g} drinks/day ({ago(r.days_ago)})")
            return
        break
    for r in ctx.h.of(codes.ALCOHOL_STATUS):
        if _within_substance_window(ctx, r.days_ago) and _alcohol_current(r):
            ctx.raise_flag("substance_use", f"alcohol use: {_reading_text(r)} ({ago(r.days_ago)})")
            return
        break
    for r in ctx.h.of(codes.ILLICIT_DRUG_USE):
        if not _within_substance_window(ctx, r.days_ago):
            break
        if r.value_code in codes.ILLICIT_DRUG_USE_CODES or qualitative(
            r.value_code, r.value_string, r.value_boolean, r.value_display
        ):
            ctx.raise_flag("substance_use", f"illicit drug use: {_reading_text(r)} ({ago(r.days_ago)})")
            return
        break
    for kind in ("alcohol", "substances"):
        habit = _latest_habit(ctx.h, kind)
        if habit and _within_substance_window(ctx, habit.days_ago) and (habit.quantity or 0) > 0:
            ctx.raise_flag("substance_use", f"reports {habit.label.lower()}: {habit.value} ({ago(habit.days_ago)})")
            return
        if (
            habit
            and kind == "substances"
            and _within_substance_window(ctx, habit.days_ago)
            and habit.value not in ("stopped", "none", "no")
        ):
            ctx.raise_flag("substance_use", f"reports {habit.value} ({ago(habit.days_ago)})")
            return


def _alcohol_current(r: Reading) -> bool:
    if r.quantity is not None:
        return r.quantity > 0
    if r.value_code:
        return r.value_code not in codes.NON_DRINKER and r.value_code not in codes.NEGATIVE_RESULTS
    text = (r.value_string or r.value_display).strip().lower()
    if not text:
        return bool(r.value_boolean)
    return (
        not any(word in text for word in ("never", "non", "none", "no ", "denies", "former", "ex-", "quit", "stopped"))
        and text != "no"
    )


def _caffeine(ctx: _Context):
    reading = ctx.h.latest(codes.CAFFEINE)
    if reading is not None and reading.quantity is not None:
        if reading.quantity > 300:
            ctx.raise_flag("high_caffeine", f"caffeine {reading.quantity:g} mg/day ({ago(reading.days_ago)})")
        return
    habit = _latest_habit(ctx.h, "caffeine")
    if habit and (habit.quantity or 0) > 300:
        ctx.raise_flag("high_caffeine", f"reports caffeine {habit.quantity:g} mg/day ({ago(habit.days_ago)})")


def _anaemia(ctx: _Context):
    for r in ctx.h.of(codes.HAEMOGLOBIN):
        hb = to_g_dl(r.quantity, r.unit) if r.quantity is not None else None
        if hb is None:
            continue
        evidence = (
            f"haemoglobin {hb:.1f} g/dL"
            + (f" ({r.quantity:g} {r.unit})" if r.unit.lower() != "g/dl" else "")
            + f" ({ago(r.days_ago)})"
        )
        if hb < 11.0:
            ctx.raise_flag("anaemia", evidence)
        if hb < 7.0:
            ctx.raise_flag("severe_anaemia", evidence)
        return


def _hypertension(ctx: _Context):
    readings = blood_pressures(ctx.h)
    if readings:
        bp = readings[0]
        evidence = (
            f"BP {bp.systolic:.0f}/{bp.diastolic:.0f} mmHg "
            f"({ago(bp.days_ago)}{', repeat reading at the same visit' if bp.repeat else ''})"
        )
        if bp.systolic >= 140 or bp.diastolic >= 90:
            ctx.raise_flag("hypertension", evidence)
        if bp.systolic >= 160 or bp.diastolic >= 110:
            ctx.raise_flag("severe_hypertension", evidence)
    disorder = ctx.condition(codes.HYPERTENSIVE_DISORDER)
    if disorder:
        ctx.raise_flag(
            "hypertension", f"condition: {disorder.display or disorder.code} ({ago(disorder.onset_days_ago)})"
        )


def _pre_eclampsia(ctx: _Context):
    if not ctx.pregnancy.pregnant:
        return
    condition = ctx.condition(codes.PRE_ECLAMPSIA, current_pregnancy_only=True, active_only=False)
    if condition:
        ctx.raise_flag(
            "pre_eclampsia",
            f"condition: {condition.display or condition.code} in this pregnancy ({ago(condition.onset_days_ago)})",
        )
        return
    readings = [bp for bp in blood_pressures(ctx.h) if ctx.pregnancy.started_within(bp.days_ago)]
    if not readings or not ctx.pregnancy.dated:
        return  # the 20-week threshold needs her gestational age
    bp = readings[0]
    weeks_at_reading = (ctx.pregnancy.gestational_days - bp.days_ago) / 7
    if not (bp.systolic >= 140 or bp.diastolic >= 90) or weeks_at_reading < 20:
        return
    for r in ctx.in_pregnancy(ctx.h.of(codes.URINE_PROTEIN_ORDINAL, codes.URINE_PROTEIN_MASS)):
        grade = dipstick_grade(r.value_string, r.value_display, r.quantity, r.unit, r.value_code)
        if grade is None:
            continue
        if grade >= 2:
            ctx.raise_flag(
                "pre_eclampsia",
                f"BP {bp.systolic:.0f}/{bp.diastolic:.0f} mmHg at {weeks_at_reading:.0f} weeks "
                f"({ago(bp.days_ago)}) with urine protein {_reading_text(r)} ({ago(r.days_ago)})",
            )
        return


def _pre_eclampsia_risk(ctx: _Context):
    if not ctx.pregnancy.pregnant:
        return
    factors = []
    for d in ctx.h.diagnosed(codes.PRE_ECLAMPSIA):
        if d.onset_days_ago is not None and not ctx.pregnancy.started_within(d.onset_days_ago):
            factors.append(f"pre-eclampsia or eclampsia in a past pregnancy ({ago(d.onset_days_ago)})")
            break
    chronic = ctx.condition(codes.CHRONIC_HYPERTENSION)
    if chronic and (
        chronic.onset_days_ago is None
        or not ctx.pregnancy.started_within(chronic.onset_days_ago)
        or chronic.code != "38341003"
    ):
        factors.append(f"chronic hypertension ({chronic.display or chronic.code})")
    diabetes = ctx.condition(codes.DIABETES)
    if diabetes:
        factors.append(f"pre-existing diabetes ({diabetes.display or diabetes.code})")
    kidney = ctx.condition(codes.KIDNEY_DISEASE)
    if kidney:
        factors.append(f"kidney disease ({kidney.display or kidney.code})")
    autoimmune = ctx.condition(codes.AUTOIMMUNE_DISEASE)
    if autoimmune:
        factors.append(f"autoimmune disease ({autoimmune.display or autoimmune.code})")
    multiple = _multiple_pregnancy_evidence(ctx)
    if multiple:
        factors.append(multiple)
    if factors:
        ctx.raise_flag("pre_eclampsia_risk", "; ".join(factors))


def _glucose_values(ctx: _Context, code_set) -> list[tuple[float, Reading]]:
    out = []
    for r in ctx.in_pregnancy(ctx.h.of(code_set)):
        if r.quantity is not None:
            value = to_mg_dl(r.quantity, r.unit)
            if value is not None:
                # Compared as whole mg/dL, as labs report them: 5.1 mmol/L is the WHO 92 mg/dL threshold.
                out.append((round(value), r))
    return out


def _glucose_evidence(name: str, value: float, r: Reading) -> str:
    original = f" ({r.quantity:g} {r.unit})" if r.unit.lower().replace(" ", "") == "mmol/l" else ""
    return f"{name} {value:.0f} mg/dL{original} in this pregnancy ({ago(r.days_ago)})"


def _diabetes(ctx: _Context):
    if not ctx.pregnancy.pregnant:
        return
    for value, r in _glucose_values(ctx, codes.FASTING_GLUCOSE):
        if value >= 126:
            ctx.raise_flag("diabetes_in_pregnancy", _glucose_evidence("fasting glucose", value, r))
        elif value >= 92:
            ctx.raise_flag("gestational_diabetes", _glucose_evidence("fasting glucose", value, r))
    for value, r in _glucose_values(ctx, {codes.OGTT_1H}):
        if value >= 180:
            ctx.raise_flag("gestational_diabetes", _glucose_evidence("75 g OGTT 1-hour glucose", value, r))
    for value, r in _glucose_values(ctx, {codes.OGTT_2H}):
        if value >= 200:
            ctx.raise_flag("diabetes_in_pregnancy", _glucose_evidence("75 g OGTT 2-hour glucose", value, r))
        elif value >= 153:
            ctx.raise_flag("gestational_diabetes", _glucose_evidence("75 g OGTT 2-hour glucose", value, r))
    for value, r in _glucose_values(ctx, codes.RANDOM_GLUCOSE):
        if value >= 200:
            ctx.raise_flag("diabetes_in_pregnancy", _glucose_evidence("random glucose", value, r))
    pre_existing = ctx.condition(codes.DIABETES)
    if pre_existing:
        ctx.raise_flag("diabetes_in_pregnancy", f"pre-existing diabetes: {pre_existing.display or pre_existing.code}")
    gdm = ctx.condition(codes.GESTATIONAL_DIABETES, current_pregnancy_only=True)
    if gdm:
        ctx.raise_flag("gestational_diabetes", f"condition: {gdm.display or gdm.code} ({ago(gdm.onset_days_ago)})")


def _urinary_infection(ctx: _Context):
    culture = ctx.h.latest(codes.URINE_CULTURE)
    if culture is not None:
        result = qualitative(culture.value_code, culture.value_string, culture.value_boolean, culture.value_display)
        organism = bool(culture.value_code) and culture.value_code not in codes.NEGATIVE_RESULTS and result is not False
        if result or organism:
            ctx.raise_flag("urinary_infection", f"urine culture: {_reading_text(culture)} ({ago(culture.days_ago)})")
            return
    nitrite = ctx.h.latest(codes.URINE_NITRITE)
    nitrite_result = None
    if nitrite is not None:
        nitrite_result = qualitative(
            nitrite.value_code, nitrite.value_string, nitrite.value_boolean, nitrite.value_display
        )
        if nitrite_result is None:
            grade = dipstick_grade(nitrite.value_string, nitrite.value_display, None, "", nitrite.value_code)
            nitrite_result = None if grade is None else grade >= 1
        if nitrite_result:
            ctx.raise_flag("urinary_infection", f"urine nitrite positive ({ago(nitrite.days_ago)})")
            return
    leukocytes = ctx.h.latest(codes.URINE_LEUKOCYTES)
    if leukocytes is not None and nitrite_result is not False:
        grade = dipstick_grade(leukocytes.value_string, leukocytes.value_display, None, "", leukocytes.value_code)
        if grade is not None and grade >= 2:
            ctx.raise_flag(
                "urinary_infection",
                f"urine leukocyte esterase {_reading_text(leukocytes)} ({ago(leukocytes.days_ago)})",
            )


def _gbs(ctx: _Context):
    test = ctx.h.latest(codes.GBS)
    if test is not None and (
        test.value_code == codes.STREP_AGALACTIAE
        or qualitative(test.value_code, test.value_string, test.value_boolean, test.value_display)
    ):
        ctx.raise_flag("gbs_positive", f"group B streptococcus {_reading_text(test)} ({ago(test.days_ago)})")
        return
    for r in ctx.h.readings:
        if r.value_code == codes.STREP_AGALACTIAE:
            ctx.raise_flag("gbs_positive", f"culture grew Streptococcus agalactiae ({ago(r.days_ago)})")
            return


def _rh(ctx: _Context):
    rh = ctx.h.latest(codes.RH_TYPE)
    if rh is not None:
        if rh.value_code == codes.RH_NEGATIVE or (
            not rh.value_code and "neg" in (rh.value_string or rh.value_display).lower()
        ):
            ctx.raise_flag("rh_negative", f"RhD negative ({ago(rh.days_ago)})")
        return
    combined = ctx.h.latest(codes.ABO_RH)
    if combined is not None:
        text = (combined.value_display or combined.value_string).lower()
        if "neg" in text or text.rstrip().endswith("-"):
            ctx.raise_flag(
                "rh_negative",
                f"blood group {combined.value_display or combined.value_string} ({ago(combined.days_ago)})",
            )


def _post_term(ctx: _Context):
    if ctx.pregnancy.dated and ctx.pregnancy.gestational_days > 40 * 7:
        ctx.raise_flag(
            "post_term", f"gestational age {ctx.pregnancy.label} at the consultation ({ctx.pregnancy.basis})"
        )


def _multiple_pregnancy_evidence(ctx: _Context) -> str | None:
    for r in ctx.in_pregnancy(ctx.h.of(codes.FETUS_COUNT)):
        if r.quantity is not None:
            return f"{r.quantity:g} fetuses on ultrasound ({ago(r.days_ago)})" if r.quantity >= 2 else None
    condition = ctx.condition(codes.MULTIPLE_PREGNANCY, current_pregnancy_only=True, active_only=False)
    if condition:
        return f"condition: {condition.display or condition.code} ({ago(condition.onset_days_ago)})"
    return None


def _multiple_pregnancy(ctx: _Context):
    if ctx.pregnancy.pregnant:
        evidence = _multiple_pregnancy_evidence(ctx)
        if evidence:
            ctx.raise_flag("multiple_pregnancy", evidence)


def _previous_caesarean(ctx: _Context):
    count = ctx.h.latest(codes.PREVIOUS_CAESAREANS)
    if count is not None and count.quantity is not None and count.quantity >= 1:
        ctx.raise_flag(
            "previous_c_section", f"{count.quantity:g} previous caesarean section(s) recorded ({ago(count.days_ago)})"
        )
        return
    for p in ctx.h.procedures:
        if p.code in codes.CAESAREAN and p.days_ago is not None:
            ctx.raise_flag("previous_c_section", f"procedure: {p.display or 'caesarean section'} ({ago(p.days_ago)})")
            return


def _infection_rule(flag: str, name: str, tests, conditions) -> Callable[[_Context], None]:
    def rule(ctx: _Context):
        test = ctx.h.latest(tests)
        if test is not None and qualitative(test.value_code, test.value_string, test.value_boolean, test.value_display):
            ctx.raise_flag(flag, f"{name} test {_reading_text(test)} ({ago(test.days_ago)})")
            return
        condition = ctx.condition(conditions)
        if condition:
            ctx.raise_flag(flag, f"condition: {condition.display or condition.code} ({ago(condition.onset_days_ago)})")

    return rule


def _latest_habit(h: PatientHistory, kind: str):
    habits = [x for x in h.habits if x.kind == kind]
    return min(habits, key=lambda x: x.days_ago) if habits else None


RULES = [
    _bmi,
    _tobacco,
    _secondhand,
    _substances,
    _caffeine,
    _anaemia,
    _hypertension,
    _pre_eclampsia,
    _pre_eclampsia_risk,
    _diabetes,
    _urinary_infection,
    _gbs,
    _rh,
    _post_term,
    _multiple_pregnancy,
    _previous_caesarean,
    _infection_rule("hiv_positive", "HIV", codes.HIV_TESTS, codes.HIV),
    _infection_rule("syphilis_positive", "syphilis", codes.SYPHILIS_TESTS, codes.SYPHILIS),
    _infection_rule("hepatitis_b_positive", "hepatitis B surface antigen", codes.HEPATITIS_B_TESTS, codes.HEPATITIS_B),
    _infection_rule("hepatitis_c_positive", "hepatitis C antibody", codes.HEPATITIS_C_TESTS, codes.HEPATITIS_C),
    _infection_rule("tb_screening_positive", "tuberculosis screening", {codes.TB_SCREENING}, codes.TUBERCULOSIS),
]
