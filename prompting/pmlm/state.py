"""Clinical state at the consultation: pregnancy and gestational age, G/P, latest values."""

from __future__ import annotations

from dataclasses import dataclass

from . import codes
from .history import PatientHistory, Reading
from .units import to_cm, to_g_dl, to_kg, to_mg_dl, to_mm_hg, to_weeks


def ago(days: int | None) -> str:
    """How long before the consultation, in words ("3 days ago") — never a date."""
    if days is None:
        return "date unknown"
    if days == 0:
        return "today"
    if days == 1:
        return "yesterday"
    if days < 14:
        return f"{days} days ago"
    if days < 90:
        return f"{days // 7} weeks ago"
    if days < 730:
        return f"{round(days / 30.44)} months ago"
    return f"{days // 365} years ago"


@dataclass(frozen=True)
class Pregnancy:
    """Her pregnancy at the consultation. Pregnant with `gestational_days` None is a pregnancy the
    record proves (antenatal care, pregnancy-only findings) but does not date: rules that need the
    gestational age are skipped, every other rule applies to the last `lookback_days`."""

    pregnant: bool
    gestational_days: int | None = None  # at the consultation; = days since the pregnancy started
    basis: str = ""
    lookback_days: int | None = None  # undated: how far back a value counts as "in this pregnancy"
    # Not pregnant, her last pregnancy having ended within RECENT_PREGNANCY_END_DAYS: when, and what ended it.
    ended_days_ago: int | None = None
    ended_by: str = ""
    # Undated: the most recent antenatal care or pregnancy-only finding that proves it, in days ago.
    evidence_days_ago: int | None = None

    @property
    def dated(self) -> bool:
        return self.pregnant and self.gestational_days is not None

    @property
    def window_days(self) -> int | None:
        """How many days back a value counts as recorded in this pregnancy (None: not pregnant)."""
        if not self.pregnant:
            return None
        return self.gestational_days if self.gestational_days is not None else self.lookback_days

    @property
    def weeks(self) -> int | None:
        return None if self.gestational_days is None else self.gestational_days // 7

    @property
    def trimester(self) -> int | None:
        if self.weeks is None:
            return None
        return 3 if self.weeks >= 28 else 2 if self.weeks >= 14 else 1

    @property
    def label(self) -> str:
        if not self.pregnant:
            return f"not pregnant: her pregnancy ended {self.ended}" if self.ended else "not pregnant"
        if self.gestational_days is None:
            return "gestational age not recorded"
        return f"{self.weeks}+{self.gestational_days % 7} weeks, trimester {self.trimester}"

    @property
    def ended(self) -> str:
        """When and how her last pregnancy ended, if recently ("2 weeks ago (induced termination of pregnancy)")."""
        return "" if self.ended_days_ago is None else f"{ago(self.ended_days_ago)} ({self.ended_by})"

    def started_within(self, days_ago: int | None) -> bool:
        """Was something `days_ago` recorded in this pregnancy?"""
        window = self.window_days
        return window is not None and days_ago is not None and days_ago <= window


@dataclass(frozen=True)
class PregnancyEnd:
    days_ago: int
    what: str
    specific: bool  # a birth, loss or termination; not only the pregnancy episode closing


def _pregnancy_ends(h: PatientHistory) -> list[PregnancyEnd]:
    """Every event in the record that ends a pregnancy, most recent first."""
    ends = [
        PregnancyEnd(d.abated_days_ago, "pregnancy episode closed", False)
        for d in h.diagnosed(codes.PREGNANCY_CONDITIONS)
        if d.abated_days_ago is not None
    ]
    ends += [
        PregnancyEnd(d.onset_days_ago, d.display or d.code, True)
        for d in h.diagnosed(codes.PREGNANCY_ENDING_CONDITIONS)
        if d.onset_days_ago is not None
    ]
    ends += [
        PregnancyEnd(p.days_ago, p.display or p.code, True)
        for p in h.procedures
        if p.code in codes.PREGNANCY_ENDING_PROCEDURES and p.days_ago is not None
    ]
    ends += [PregnancyEnd(v.days_ago, "postnatal visit", True) for v in h.visits if v.code in codes.POSTNATAL_VISITS]
    return sorted((e for e in ends if e.days_ago >= 0), key=lambda e: (e.days_ago, not e.specific))


def _last_pregnancy_end(h: PatientHistory) -> int | None:
    """Days since the most recent event that ends a pregnancy, if any."""
    ends = _pregnancy_ends(h)
    return ends[0].days_ago if ends else None


def _recently_ended(h: PatientHistory) -> Pregnancy:
    """Not pregnant; if her last pregnancy ended recently, when and how (the birth, loss or termination
    rather than the episode closing at the follow-up visit, when the record has it)."""
    ends = [e for e in _pregnancy_ends(h) if e.days_ago <= codes.RECENT_PREGNANCY_END_DAYS]
    if not ends:
        return Pregnancy(False)
    specific = [e for e in ends if e.specific]
    end = specific[0] if specific else ends[0]
    return Pregnancy(False, ended_days_ago=end.days_ago, ended_by=end.what[:1].lower() + end.what[1:])


def current_pregnancy(h: PatientHistory) -> Pregnancy:
    """Gestational age from, in order: a gestational-age observation carried forward by the days
    since it, the last menstrual period, the start of the current pregnancy episode. Failing all
    three, recent antenatal care or a pregnancy-only finding makes her pregnant with the
    gestational age not recorded (see `undated_pregnancy`)."""
    last_end = _last_pregnancy_end(h)

    def plausible(start_days_ago: int) -> bool:
        ended = last_end is not None and last_end <= start_days_ago
        return 0 <= start_days_ago <= codes.MAX_PREGNANCY_DAYS and not ended

    for reading in h.of(codes.GESTATIONAL_AGE):
        weeks = to_weeks(reading.quantity, reading.unit) if reading.quantity is not None else None
        if weeks is None:
            continue
        start = round(weeks * 7) + reading.days_ago
        if plausible(start):
            return Pregnancy(
                True, start, f"gestational-age observation of {weeks:g} weeks, {reading.days_ago} days ago"
            )
        break  # only the latest gestational-age observation speaks for the current pregnancy
    if h.lmp_days_ago is not None and plausible(h.lmp_days_ago):
        return Pregnancy(True, h.lmp_days_ago, "last menstrual period")
    onsets = [
        d.onset_days_ago
        for d in h.diagnosed(codes.PREGNANCY_CONDITIONS)
        if d.onset_days_ago is not None and d.abated_days_ago is None and plausible(d.onset_days_ago)
    ]
    if onsets:
        return Pregnancy(True, max(onsets), "start of the pregnancy episode")
    return undated_pregnancy(h, last_end) or _recently_ended(h)


FINDING_NAMES = {
    **dict.fromkeys(codes.FETUS_COUNT, "number of fetuses"),
    **dict.fromkeys(codes.FETAL_HEART_RATE, "fetal heart rate"),
    codes.FUNDAL_HEIGHT: "symphysis-fundal height",
    codes.OGTT_1H: "1-hour 75 g OGTT glucose",
}


def undated_pregnancy(h: PatientHistory, last_end: int | None) -> Pregnancy | None:
    """Pregnant, gestational age not recorded: an antenatal-care encounter or a pregnancy-only
    finding (number of fetuses, fetal heart rate, symphysis-fundal height, a 1-hour OGTT draw) in
    the last UNDATED_PREGNANCY_EVIDENCE_DAYS, after anything that ended a pregnancy. Values then
    count as "in this pregnancy" for UNDATED_PREGNANCY_LOOKBACK_DAYS back, stopping the day after
    that end."""

    def recent(days_ago: int | None) -> bool:
        return (
            days_ago is not None
            and 0 <= days_ago <= codes.UNDATED_PREGNANCY_EVIDENCE_DAYS
            and (last_end is None or days_ago < last_end)
        )

    evidence = [
        (v.days_ago, f"antenatal care encounter {ago(v.days_ago)}")
        for v in h.visits
        if (v.prenatal or v.code in codes.PRENATAL_VISITS) and recent(v.days_ago)
    ]
    evidence += [
        (r.days_ago, f"{FINDING_NAMES[r.code]} recorded {ago(r.days_ago)}")
        for r in h.of(codes.PREGNANCY_ONLY_FINDINGS)
        if recent(r.days_ago)
    ]
    if not evidence:
        return None
    lookback = (
        codes.UNDATED_PREGNANCY_LOOKBACK_DAYS
        if last_end is None
        else min(codes.UNDATED_PREGNANCY_LOOKBACK_DAYS, last_end - 1)
    )
    latest = min(evidence)
    return Pregnancy(True, None, latest[1], lookback_days=lookback, evidence_days_ago=latest[0])


@dataclass(frozen=True)
class BloodPressure:
    systolic: float
    diastolic: float
    days_ago: int
    repeat: bool  # a repeat reading at the same visit decided


def blood_pressures(h: PatientHistory) -> list[BloodPressure]:
    """Paired systolic/diastolic readings, most recent first (the repeat first within a visit)."""
    systolic = {(r.days_ago, r.encounter, r.sequence): r for r in h.of(codes.SYSTOLIC)}
    diastolic = {(r.days_ago, r.encounter, r.sequence): r for r in h.of(codes.DIASTOLIC)}
    pairs = []
    for key, s in systolic.items():
        d = diastolic.get(key)
        s_val = to_mm_hg(s.quantity, s.unit) if s.quantity is not None else None
        d_val = to_mm_hg(d.quantity, d.unit) if d and d.quantity is not None else None
        if s_val is not None and d_val is not None:
            pairs.append((key, s_val, d_val))
    pairs.sort(key=lambda p: (p[0][0], -p[0][2]))
    out = []
    for (days_ago, encounter, _), s_val, d_val in pairs:
        same_visit = [p for p in pairs if (p[0][1] == encounter if encounter is not None else p[0][0] == days_ago)]
        out.append(BloodPressure(s_val, d_val, days_ago, repeat=len(same_visit) > 1))
    if not out:
        # Unpaired readings: the latest of each.
        s, d = h.latest(codes.SYSTOLIC), h.latest(codes.DIASTOLIC)
        if s and d and s.quantity is not None and d.quantity is not None:
            out.append(BloodPressure(s.quantity, d.quantity, min(s.days_ago, d.days_ago), False))
    return out


def latest_quantity(h: PatientHistory, code_or_set, convert) -> tuple[float, Reading] | None:
    for reading in h.of(code_or_set):
        if reading.quantity is not None:
            value = convert(reading.quantity, reading.unit)
            if value is not None:
                return value, reading
    return None


@dataclass(frozen=True)
class Bmi:
    value: float
    basis: str
    days_ago: int

    @property
    def category(self) -> str:
        return (
            "underweight"
            if self.value < 18.5
            else "obese"
            if self.value >= 30
            else "overweight"
            if self.value >= 25
            else "normal weight"
        )


def body_mass_index(h: PatientHistory, pregnancy: Pregnancy) -> Bmi | None:
    """From pre-pregnancy weight and height, else a BMI observation, else weight and height.
    In pregnancy, values from before it started are preferred (gestational weight inflates BMI)."""
    height = latest_quantity(h, codes.HEIGHT, to_cm)
    pre = latest_quantity(h, codes.PRE_PREGNANCY_WEIGHT, to_kg)
    if pre and height and height[0] > 0:
        return Bmi(pre[0] / (height[0] / 100) ** 2, "pre-pregnancy weight and height", pre[1].days_ago)

    def before_pregnancy(readings):
        if not pregnancy.pregnant:
            return readings
        earlier = [r for r in readings if r.days_ago > pregnancy.window_days]
        return earlier or readings

    bmis = before_pregnancy([r for r in h.of(codes.BMI) if r.quantity is not None])
    if bmis:
        return Bmi(bmis[0].quantity, "BMI observation", bmis[0].days_ago)
    weights = before_pregnancy([r for r in h.of(codes.WEIGHT) if r.quantity is not None and to_kg(r.quantity, r.unit)])
    if weights and height and height[0] > 0:
        kg = to_kg(weights[0].quantity, weights[0].unit)
        return Bmi(kg / (height[0] / 100) ** 2, "weight and height", weights[0].days_ago)
    return None


def gravida_parity(h: PatientHistory, pregnancy: Pregnancy) -> tuple[int | None, int | None, str]:
    """Recorded gravida and parity, else counted from pregnancy episodes in the record."""
    g, p = h.latest(codes.GRAVIDA), h.latest(codes.PARITY)
    if g and g.quantity is not None:
        return int(g.quantity), (int(p.quantity) if p and p.quantity is not None else None), "recorded"
    episodes = sorted(
        {
            d.onset_days_ago
            for d in h.diagnosed(codes.PREGNANCY_CONDITIONS | codes.PREGNANCY_ENDING_CONDITIONS)
            if d.onset_days_ago is not None
        },
        reverse=True,
    )
    merged: list[int] = []
    for onset in episodes:  # conditions within 30 weeks of each other belong to one pregnancy
        if not merged or merged[-1] - onset > 30 * 7:
            merged.append(onset)
    births = sum(
        1
        for d in h.diagnosed(codes.PREGNANCY_CONDITIONS)
        if d.code == codes.NORMAL_PREGNANCY
        and d.onset_days_ago is not None
        and d.abated_days_ago is not None
        and d.onset_days_ago - d.abated_days_ago >= 24 * 7
    )
    if not merged and not pregnancy.pregnant:
        return None, None, ""
    return max(len(merged), 1 if pregnancy.pregnant else 0), births, "counted from the record"


LATEST_VALUES = (
    ("Weight", codes.WEIGHT, to_kg, "kg", 1),
    ("Haemoglobin", codes.HAEMOGLOBIN, to_g_dl, "g/dL", 1),
    ("Fasting glucose", codes.FASTING_GLUCOSE, to_mg_dl, "mg/dL", 0),
    ("Random glucose", codes.RANDOM_GLUCOSE, to_mg_dl, "mg/dL", 0),
    ("Fetal heart rate", codes.FETAL_HEART_RATE, lambda v, u: v, "/min", 0),
    ("Fundal height", codes.FUNDAL_HEIGHT, to_cm, "cm", 0),
)


def latest_values(h: PatientHistory) -> list[tuple[str, str, int]]:
    """(label, value with unit, days ago) for the vitals and labs a clinician reads first."""
    out = []
    bps = blood_pressures(h)
    if bps:
        bp = bps[0]
        out.append(("Blood pressure", f"{bp.systolic:.0f}/{bp.diastolic:.0f} mmHg", bp.days_ago))
    for label, code, convert, unit, digits in LATEST_VALUES:
        found = latest_quantity(h, code, convert)
        if found:
            out.append((label, f"{round(found[0], digits):g} {unit}", found[1].days_ago))
    return out
