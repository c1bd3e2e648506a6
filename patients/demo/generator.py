"""Generates what Synthea lacks — lifestyle over time, care ratings, physician recommendations —
deterministically from a seed and consistent with each patient's record. No Django import.

Assumptions (also in the README):
- Every patient belongs to one of four latent types (routine follower, self-tracker, lifestyle
  changer, information seeker) that likes some kinds of effort (taking a medicine, monitoring,
  changing a habit, learning) more than others. A care item's rating is driven by how well its
  effort profile suits her type, whether it answers a clinical need of hers, her own and the
  item's bias, and noise. This gives a recommender real structure to find.
- Items are offered mostly when her record calls for them, and a rating is observed more often
  when it is high (women who drop an item often never report back): missing not at random.
- Some women's adherence fades: later ratings of the same item fall.
- Lifestyle follows her record (a smoker in Synthea smokes here) and changes in pregnancy:
  many stop smoking, drinking alcohol or cut caffeine; some want more detail after a
  complication.
- Physician recommendations are written at every prenatal encounter from her state at that
  date (gestational age, latest blood pressure, haemoglobin, glucose, BMI, smoking, conditions,
  previous caesarean), in varied wording, following WHO antenatal-care recommendations. A visit
  coded prenatal at which her pregnancy had already ended (Synthea's follow-up after an induced
  termination, a miscarriage diagnosed at the booking visit) gets the care after a pregnancy
  ends instead: bleeding and infection checks, contraception, anti-D, her mood.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from prompting.pmlm import codes

from .catalogue import CARE_ITEMS, CatalogueItem

SMOKER_CODES = {"449868002", "428041000124106", "77176002", "65568007"}
HYPERTENSION_CODES = {"38341003", "59621000"}
DIABETES_CODES = {"44054006", "73211009"}
GLUCOSE_CODES = DIABETES_CODES | {"15777000", "11687002"}
PRE_ECLAMPSIA_CODES = {"398254007", "15938005", "198992004"}
ANAEMIA_CODES = {"271737000", "27342004"}
CAESAREAN_CODE = "11466000"
TERMINATION_CODE = "714812005"
RECENT_END_DAYS = 84  # a prenatal-coded visit within twelve weeks of the end is about that end

LATENT_TYPES = {
    "routine follower": (1.0, 0.3, -0.5, 0.0),
    "self-tracker": (-0.2, 1.0, 0.4, 0.2),
    "lifestyle changer": (-0.6, -0.2, 1.0, 0.4),
    "information seeker": (-0.2, 0.2, 0.0, 1.0),
}


@dataclass
class Snapshot:
    """What the generator may know of one patient: her record as plain values."""

    external_id: str
    birth_date: date | None
    language: str = ""
    # (code, onset, abatement) for every condition
    conditions: list[tuple[str, datetime | None, datetime | None]] = field(default_factory=list)
    # (encounter key, start) for prenatal encounters, and the start of every encounter
    prenatal_encounters: list[tuple[int, datetime]] = field(default_factory=list)
    visits: list[datetime] = field(default_factory=list)
    # code -> [(when, value)] for the observations the generator reads
    observations: dict[str, list[tuple[datetime, float | str]]] = field(default_factory=dict)
    caesarean_dates: list[datetime] = field(default_factory=list)
    # (code, when) for procedures that end a pregnancy: births, induced termination
    pregnancy_ending_procedures: list[tuple[str, datetime]] = field(default_factory=list)


@dataclass
class Generated:
    lifestyle: list[dict] = field(default_factory=list)
    ratings: list[dict] = field(default_factory=list)
    recommendations: list[dict] = field(default_factory=list)
    latent_type: str = ""


def generate(snapshot: Snapshot, seed: int) -> Generated:
    rng = random.Random(f"{seed}:{snapshot.external_id}")
    out = Generated(latent_type=rng.choices(list(LATENT_TYPES), weights=(3, 2, 2, 3))[0])
    timepoints = _timepoints(snapshot)
    if not timepoints:
        return out
    out.lifestyle = _lifestyle(snapshot, rng, out.latent_type, timepoints)
    needs = _needs(snapshot, out.lifestyle)
    out.ratings = _ratings(snapshot, rng, out.latent_type, needs, timepoints)
    out.recommendations = [
        _recommendation(snapshot, out.lifestyle, key, when, rng) for key, when in snapshot.prenatal_encounters
    ]
    return out


# --- time -----------------------------------------------------------------------------------------


def _timepoints(s: Snapshot) -> list[datetime]:
    """Visits in the last five years of her record where lifestyle is asked about (at most 10)."""
    if not s.visits:
        return []
    last = max(s.visits)
    recent = sorted({v for v in s.visits if v >= last - timedelta(days=5 * 365)})
    if len(recent) > 10:
        step = len(recent) / 10
        recent = [recent[int(i * step)] for i in range(10)]
    return recent


def _pregnancy_at(s: Snapshot, when: datetime) -> date | None:
    """Start of the pregnancy episode that covers `when`, if any."""
    best = None
    for code, onset, abatement in s.conditions:
        if code in codes.PREGNANCY_CONDITIONS and onset and onset <= when:
            end = abatement or onset + timedelta(days=codes.MAX_PREGNANCY_DAYS)
            if when < end and (best is None or onset.date() > best):
                best = onset.date()
    return best


def _pregnancy_ended(s: Snapshot, when: datetime) -> tuple[datetime, str] | None:
    """(when, how) her last pregnancy ended, at or before `when` and within RECENT_END_DAYS:
    "termination", "loss", "birth", or "ended" when only the pregnancy episode closes; None when a
    pregnancy is current or none ended recently."""
    ends = [(t, 1, "termination" if c == TERMINATION_CODE else "birth") for c, t in s.pregnancy_ending_procedures]
    ends += [(onset, 1, "loss") for c, onset, _ in s.conditions if c in codes.PREGNANCY_ENDING_CONDITIONS and onset]
    ends += [(abated, 0, "ended") for c, _, abated in s.conditions if c in codes.PREGNANCY_CONDITIONS and abated]
    ends = [(t, specific, how) for t, specific, how in ends if t <= when and (when - t).days <= RECENT_END_DAYS]
    if not ends:
        return None
    start = _pregnancy_at(s, when)
    specific = [e for e in ends if e[1]]
    ended, _, how = max(specific or ends)  # the birth, loss or termination rather than the episode closing
    return None if start and start > ended.date() else (ended, how)


def _latest(s: Snapshot, code: str, when: datetime, within_days: int = 400):
    values = [(t, v) for t, v in s.observations.get(code, []) if t <= when and (when - t).days <= within_days]
    return max(values)[1] if values else None


# --- lifestyle ------------------------------------------------------------------------------------


def _lifestyle(s: Snapshot, rng: random.Random, latent: str, timepoints: list[datetime]) -> list[dict]:
    records: list[dict] = []

    def note(kind, when, value, quantity=None, unit=""):
        records.append({"kind": kind, "recorded_at": when, "value": value, "quantity": quantity, "unit": unit})

    first = timepoints[0]
    smoking_codes = [v for _, v in sorted(s.observations.get("72166-2", []))]
    smoker = (
        bool(smoking_codes) and smoking_codes[-1] in SMOKER_CODES or any(c == "110483000" for c, _, _ in s.conditions)
    )
    ex_smoker = not smoker and "8517006" in smoking_codes
    cigarettes = rng.choice((5, 8, 10, 15, 20)) if smoker else 0
    secondhand = rng.random() < (0.35 if smoker else 0.12)
    alcohol = rng.choices(("none", "occasional", "weekly"), weights=(55, 35, 10))[0]
    caffeine = rng.choice((60, 100, 150, 200, 250, 320, 400, 480))
    activity = (
        rng.choice((60, 90, 120, 150, 180, 240))
        if latent == "lifestyle changer"
        else rng.choice((0, 30, 60, 90, 120, 150))
    )
    sleep = rng.choice((5.5, 6.0, 6.5, 7.0, 7.5, 8.0, 8.5))
    diet = rng.choice(
        ("balanced", "irregular meals", "high in sugary drinks", "vegetarian", "low in fruit and vegetables")
    )
    substances = rng.random() < 0.04
    detail = {"information seeker": "detailed", "routine follower": "brief"}.get(
        latent, rng.choice(("brief", "standard", "detailed"))
    )
    style = {"self-tracker": "visual (charts and numbers)"}.get(
        latent, rng.choice(("direct", "reassuring", "visual (charts and numbers)"))
    )
    decision = rng.choice(("shared decision-making", "clinician-led", "shared decision-making", "independent"))

    note(
        "tobacco",
        first,
        "daily smoker" if smoker else "ex-smoker" if ex_smoker else "never smoked",
        cigarettes,
        "cigarettes/day",
    )
    note("secondhand_smoke", first, "exposed at home" if secondhand else "no exposure")
    note("alcohol", first, alcohol, {"none": 0, "occasional": 2, "weekly": 5}[alcohol], "drinks/week")
    note("caffeine", first, caffeine_words(caffeine), caffeine, "mg/day")
    note("activity", first, activity_words(activity), activity, "min/week")
    note("sleep", first, sleep_words(sleep), sleep, "h/night")
    note("diet", first, diet)
    if substances:
        note("substances", first, "cannabis occasionally")
    note("detail_level", first, detail)
    note("communication_style", first, style)
    note("language", first, s.language or "English")
    note("decision_style", first, decision)

    quits = rng.random() < 0.45
    fades = rng.random() < 0.3
    for when in timepoints[1:]:
        pregnant_since = _pregnancy_at(s, when)
        weeks = (when.date() - pregnant_since).days // 7 if pregnant_since else None
        if smoker and cigarettes:
            if pregnant_since and quits and rng.random() < 0.6:
                cigarettes = 0
                note("tobacco", when, "stopped smoking", 0, "cigarettes/day")
            elif pregnant_since and rng.random() < 0.4:
                cigarettes = max(2, cigarettes // 2)
                note("tobacco", when, "smoking less", cigarettes, "cigarettes/day")
        elif smoker and not cigarettes and rng.random() < 0.1:
            cigarettes = rng.choice((3, 5))
            note("tobacco", when, "smoking again", cigarettes, "cigarettes/day")
        if secondhand and rng.random() < 0.2:
            secondhand = False
            note("secondhand_smoke", when, "no exposure")
        if pregnant_since and alcohol != "none" and rng.random() < 0.8:
            alcohol = "none"
            note("alcohol", when, "stopped drinking in pregnancy", 0, "drinks/week")
        if pregnant_since and caffeine > 200 and rng.random() < 0.5:
            caffeine = int(caffeine * rng.choice((0.4, 0.5, 0.7)))
            note("caffeine", when, caffeine_words(caffeine), caffeine, "mg/day")
        if rng.random() < (0.35 if fades else 0.2):
            activity = max(0, activity + rng.choice((-60, -30, 30, 60)) * (-1 if fades else 1))
            note("activity", when, activity_words(activity), activity, "min/week")
        if weeks is not None and weeks >= 28 and sleep >= 6.5 and rng.random() < 0.4:
            sleep = sleep - rng.choice((0.5, 1.0))
            note("sleep", when, sleep_words(sleep), sleep, "h/night")
        if diet != "balanced" and rng.random() < 0.15:
            diet = "balanced"
            note("diet", when, diet)
        if substances and pregnant_since and rng.random() < 0.6:
            substances = False
            note("substances", when, "stopped")
        if detail != "detailed" and rng.random() < (0.25 if pregnant_since else 0.05):
            detail = "detailed" if detail == "standard" else "standard"
            note("detail_level", when, detail)
        if rng.random() < 0.05:
            decision = rng.choice(("shared decision-making", "clinician-led", "independent"))
            note("decision_style", when, decision)
    return records


def caffeine_words(mg: float) -> str:
    return "above the 300 mg/day limit" if mg > 300 else "within the 300 mg/day limit"


def activity_words(minutes: float) -> str:
    return "active (150+ min/week)" if minutes >= 150 else "somewhat active" if minutes >= 60 else "inactive"


def sleep_words(hours: float) -> str:
    return "short sleep" if hours < 6.5 else "adequate sleep"


# --- needs and ratings ------------------------------------------------------------------------------


def _needs(s: Snapshot, lifestyle: list[dict]) -> set[str]:
    needs = {"any"}
    condition_codes = {c for c, _, _ in s.conditions}
    if condition_codes & HYPERTENSION_CODES or any(v >= 140 for _, v in s.observations.get("8480-6", [])):
        needs.add("hypertension")
    if condition_codes & (HYPERTENSION_CODES | DIABETES_CODES | PRE_ECLAMPSIA_CODES | {"16356006", "65147003"}):
        needs.add("pre_eclampsia_risk")
    if condition_codes & GLUCOSE_CODES or any(v >= 126 for _, v in s.observations.get("2339-0", [])):
        needs.add("glucose")
    if condition_codes & ANAEMIA_CODES or any(v < 11 for _, v in s.observations.get("718-7", [])):
        needs.add("anaemia")
    bmis = sorted(s.observations.get("39156-5", []))
    if bmis:
        bmi = bmis[-1][1]
        needs.add(
            "underweight" if bmi < 18.5 else "obese" if bmi >= 30 else "overweight" if bmi >= 25 else "healthy_weight"
        )
    for r in lifestyle:
        if r["kind"] == "tobacco" and r["quantity"]:
            needs.add("tobacco")
        if r["kind"] in ("alcohol", "substances") and r["value"] not in (
            "none",
            "stopped",
            "stopped drinking in pregnancy",
        ):
            needs.add("substance")
        if r["kind"] == "caffeine" and (r["quantity"] or 0) > 300:
            needs.add("caffeine")
        if r["kind"] == "sleep" and (r["quantity"] or 8) < 6.5:
            needs.add("sleep")
    return needs


def _ratings(s: Snapshot, rng: random.Random, latent: str, needs: set[str], timepoints: list[datetime]) -> list[dict]:
    preference = LATENT_TYPES[latent]
    patient_bias = rng.gauss(0, 0.4)
    fading = rng.random() < 0.25
    ever_pregnant = any(c in codes.PREGNANCY_CONDITIONS for c, _, _ in s.conditions) or bool(s.prenatal_encounters)
    dates = [p for _, p in s.prenatal_encounters] or timepoints
    dates = sorted(dates)[-12:]
    ratings = []
    for item in CARE_ITEMS:
        if item.pregnancy_only and not ever_pregnant:
            continue
        specific = bool(item.needs & needs - {"any"})
        p_offer = 0.9 if specific else 0.7 if "any" in item.needs else 0.06
        if rng.random() >= p_offer:
            continue
        suit = sum(p * w for p, w in zip(preference, item.profile)) / math.sqrt(sum(w * w for w in item.profile))
        latent_score = (
            3.0 + 1.4 * suit + (0.5 if specific else 0.0) + patient_bias + _item_bias(item) + rng.gauss(0, 0.5)
        )
        first = _clip(latent_score)
        # Missing not at random: low ratings are reported less often.
        if rng.random() >= 0.45 + 0.12 * (first - 1):
            continue
        start = rng.randrange(len(dates))
        follow_ups = dates[start : start + rng.choice((1, 1, 2, 3))]
        score = latent_score
        for when in follow_ups:
            ratings.append({"item": item.slug, "rating": _clip(score), "rated_on": when.date()})
            score += rng.choice((-1.0, -0.6)) if fading else rng.gauss(0, 0.3)
    return ratings


def _item_bias(item: CatalogueItem) -> float:
    # Deterministic per item: some interventions are simply easier to keep up than others.
    return (sum(map(ord, item.slug)) % 7 - 3) * 0.12


def _clip(score: float) -> int:
    return max(1, min(5, int(round(score))))


# --- physician recommendations --------------------------------------------------------------------


def _pick(rng: random.Random, *options: str) -> str:
    return rng.choice(options)


def _lifestyle_at(lifestyle: list[dict], kind: str, when: datetime) -> dict | None:
    past = [r for r in lifestyle if r["kind"] == kind and r["recorded_at"] <= when]
    return max(past, key=lambda r: r["recorded_at"]) if past else None


def _recommendation(s: Snapshot, lifestyle: list[dict], key: int, when: datetime, rng: random.Random) -> dict:
    ended = _pregnancy_ended(s, when)
    parts = _after_pregnancy_ended(s, lifestyle, when, *ended, rng) if ended else _antenatal(s, lifestyle, when, rng)
    return {
        "encounter": key,
        "written_at": when,
        "author": _pick(rng, "Obstetrician", "Midwife (reviewed by obstetrician)", "Consultant obstetrician"),
        "text": " ".join(parts),
    }


def _after_pregnancy_ended(
    s: Snapshot, lifestyle: list[dict], when: datetime, ended: datetime, how: str, rng: random.Random
) -> list[str]:
    """Care after an induced termination, a pregnancy loss or a birth (WHO post-abortion and postnatal care)."""
    if how == "termination":
        parts = [
            _pick(
                rng, "Review after induced termination of pregnancy.", "Follow-up visit after termination of pregnancy."
            )
        ]
    elif how == "loss":
        parts = [_pick(rng, "First-trimester miscarriage.", "Pregnancy loss in the first trimester.")]
    elif how == "birth":
        parts = [_pick(rng, "Postnatal review.", "Review after the birth.")]
    else:
        parts = [_pick(rng, "Review now that her pregnancy has ended.", "Her pregnancy has ended: review.")]
    parts.append(
        _pick(
            rng,
            "Check bleeding, pain and temperature; confirm the uterus is empty if bleeding persists.",
            "Assess vaginal bleeding, abdominal pain and signs of infection.",
        )
    )
    systolic, diastolic = _latest(s, "8480-6", when), _latest(s, "8462-4", when)
    if systolic is not None and diastolic is not None and (systolic >= 140 or diastolic >= 90):
        parts.append(f"BP {systolic:.0f}/{diastolic:.0f} mmHg is raised: repeat within a week and review.")
    hb = _latest(s, "718-7", when)
    if hb is not None and hb < 11:
        parts.append(f"Haemoglobin {hb:.1f} g/dL: daily oral iron, recheck haemoglobin in 4 weeks.")
    parts.append(
        _pick(
            rng,
            "Offer contraception today; fertility returns within weeks.",
            "Discuss contraception and start a method now if she wishes.",
        )
    )
    if how != "birth":
        parts.append("Anti-D immunoglobulin if RhD negative and not yet given.")
    parts.append(
        _pick(rng, "Ask about low mood and offer emotional support.", "Screen for depression and offer counselling.")
    )
    tobacco = _lifestyle_at(lifestyle, "tobacco", when)
    if tobacco and tobacco["quantity"]:
        parts.append(f"Smokes about {tobacco['quantity']:.0f} a day: advise stopping, offer cessation support.")
    parts.append(
        _pick(
            rng,
            "Return urgently with heavy bleeding, fever, severe abdominal pain or foul-smelling discharge.",
            "Seek care at once for heavy bleeding, fever or severe pain.",
        )
    )
    return parts


def _antenatal(s: Snapshot, lifestyle: list[dict], when: datetime, rng: random.Random) -> list[str]:
    start = _pregnancy_at(s, when)
    weeks = max(4, (when.date() - start).days // 7) if start else None
    active = {
        c for c, onset, abatement in s.conditions if onset and onset <= when and (abatement is None or abatement > when)
    }
    history = {c for c, onset, _ in s.conditions if onset and onset <= when}
    parts = []
    if weeks is not None:
        parts.append(
            _pick(
                rng,
                f"Antenatal review at {weeks} weeks.",
                f"Seen at {weeks} weeks' gestation.",
                f"{weeks}-week antenatal visit.",
            )
        )
    else:
        parts.append(_pick(rng, "Antenatal review.", "Routine antenatal visit."))

    systolic, diastolic = _latest(s, "8480-6", when), _latest(s, "8462-4", when)
    if systolic is not None and diastolic is not None:
        if systolic >= 140 or diastolic >= 90:
            parts.append(
                _pick(
                    rng,
                    (
                        f"BP {systolic:.0f}/{diastolic:.0f} mmHg is raised: repeat within a week, start home blood "
                        "pressure monitoring and check urine protein."
                    ),
                    (
                        f"Blood pressure elevated at {systolic:.0f}/{diastolic:.0f}; arrange home BP monitoring, "
                        "urine dipstick for protein and review in one week."
                    ),
                )
            )
            parts.append(
                _pick(
                    rng,
                    (
                        "Explain warning signs of pre-eclampsia: severe headache, visual disturbance, epigastric "
                        "pain, sudden swelling."
                    ),
                    "Return urgently with severe headache, blurred vision, upper abdominal pain or sudden swelling.",
                )
            )
        else:
            parts.append(
                _pick(
                    rng,
                    f"BP {systolic:.0f}/{diastolic:.0f} mmHg, within normal range.",
                    f"Blood pressure normal ({systolic:.0f}/{diastolic:.0f}).",
                )
            )
    if active & PRE_ECLAMPSIA_CODES:
        parts.append(
            _pick(
                rng,
                (
                    "Known pre-eclampsia: BP and urine protein twice weekly, bloods for platelets, liver and renal "
                    "function, and plan timing of birth with the obstetric team."
                ),
                (
                    "Pre-eclampsia: close monitoring (BP, proteinuria, platelets, LFTs, creatinine) and obstetric "
                    "plan for delivery timing."
                ),
            )
        )
    elif history & (HYPERTENSION_CODES | DIABETES_CODES) or (
        history & PRE_ECLAMPSIA_CODES and not active & PRE_ECLAMPSIA_CODES
    ):
        parts.append(
            _pick(
                rng,
                (
                    "High risk of pre-eclampsia: low-dose aspirin 75–150 mg at night from 12 weeks, and calcium "
                    "1.5–2 g daily if dietary intake is low."
                ),
                (
                    "Start low-dose aspirin (75–150 mg nightly) from 12 weeks given her pre-eclampsia risk "
                    "factors; calcium supplementation if diet is low in calcium."
                ),
            )
        )

    hb = _latest(s, "718-7", when)
    if (hb is not None and hb < 11) or (hb is None and active & ANAEMIA_CODES):
        hb_text = f"Haemoglobin {hb:.1f} g/dL" if hb is not None else "Known anaemia"
        parts.append(
            _pick(
                rng,
                f"{hb_text}: daily oral iron 120 mg elemental with folic acid 400 µg, recheck haemoglobin in 4 weeks.",
                (
                    f"{hb_text} — treat anaemia with 120 mg elemental iron and 400 µg folic acid daily; "
                    "repeat full blood count in a month."
                ),
            )
        )
    else:
        parts.append(
            _pick(
                rng,
                "Continue daily iron (30–60 mg) and folic acid (400 µg).",
                "Keep taking iron and folic acid supplements daily.",
            )
        )

    glucose = _latest(s, "2339-0", when)
    if glucose is not None and glucose >= 126:
        parts.append(
            _pick(
                rng,
                f"Glucose {glucose:.0f} mg/dL is high: 75 g OGTT now, low-glycaemic diet and glucose self-monitoring.",
                (
                    f"Random glucose {glucose:.0f} mg/dL; refer to dietitian for a low-glycaemic plan, "
                    "teach home glucose monitoring and arrange an OGTT."
                ),
            )
        )
    elif active & GLUCOSE_CODES:
        parts.append(
            _pick(
                rng,
                (
                    "Known diabetes or prediabetes: glucose self-monitoring, low-glycaemic diet, and a 75 g OGTT "
                    "at 24–28 weeks if not already diagnosed."
                ),
                (
                    "Impaired glucose regulation on record: dietitian review for a low-glycaemic plan and home "
                    "glucose monitoring."
                ),
            )
        )

    bmi = _latest(s, "39156-5", when, within_days=3 * 365)
    if bmi is not None:
        if bmi >= 30:
            parts.append(
                _pick(
                    rng,
                    (
                        f"BMI {bmi:.1f} (obese): aim for 5–9 kg total weight gain, dietitian referral, "
                        "150 minutes of moderate activity a week."
                    ),
                    f"With a BMI of {bmi:.0f}, recommended gain is 5–9 kg; discuss diet and regular moderate exercise.",
                )
            )
        elif bmi >= 25:
            parts.append(
                _pick(
                    rng,
                    f"BMI {bmi:.1f} (overweight): target weight gain 7–11.5 kg; healthy eating and regular activity.",
                    "Overweight before pregnancy: keep total gain to 7–11.5 kg with healthy eating and activity.",
                )
            )
        elif bmi < 18.5:
            parts.append(
                _pick(
                    rng,
                    f"BMI {bmi:.1f} (underweight): target gain 12.5–18 kg, energy and protein counselling.",
                    "Underweight: aim for 12.5–18 kg gain; nutritional counselling on energy and protein intake.",
                )
            )

    tobacco = _lifestyle_at(lifestyle, "tobacco", when)
    if tobacco and tobacco["quantity"]:
        parts.append(
            _pick(
                rng,
                (
                    f"Still smoking {tobacco['quantity']:.0f} cigarettes a day: advise stopping completely, "
                    "offer cessation counselling and nicotine replacement."
                ),
                (
                    f"Smokes about {tobacco['quantity']:.0f} a day — strongly advised to quit; "
                    "referral to stop-smoking service offered."
                ),
            )
        )
    elif tobacco and tobacco["value"] == "stopped smoking":
        parts.append(
            _pick(
                rng,
                "Has stopped smoking: praised, relapse triggers discussed.",
                "Congratulated on quitting smoking; plan for cravings.",
            )
        )
    secondhand = _lifestyle_at(lifestyle, "secondhand_smoke", when)
    if secondhand and secondhand["value"] != "no exposure":
        parts.append("Avoid second-hand smoke at home; household members offered cessation support.")
    alcohol = _lifestyle_at(lifestyle, "alcohol", when)
    if alcohol and alcohol["quantity"]:
        parts.append(
            _pick(
                rng,
                "Advise no alcohol in pregnancy; brief intervention given.",
                "No safe level of alcohol in pregnancy: advised to stop.",
            )
        )
    caffeine = _lifestyle_at(lifestyle, "caffeine", when)
    if caffeine and (caffeine["quantity"] or 0) > 300:
        parts.append(f"Caffeine about {caffeine['quantity']:.0f} mg/day: reduce to under 300 mg.")
    if any(d <= when for d in s.caesarean_dates) and start and any(d.date() < start for d in s.caesarean_dates):
        parts.append(
            _pick(
                rng,
                "Previous caesarean section: discuss options for birth (VBAC or repeat caesarean) by 36 weeks.",
                "Prior caesarean: counsel on vaginal birth after caesarean versus elective repeat.",
            )
        )

    if weeks is not None:
        if weeks < 14:
            parts.append(
                _pick(
                    rng,
                    "Booking bloods and dating scan; advice on nausea and food safety.",
                    "Arrange dating ultrasound and booking blood tests; discuss diet and food hygiene.",
                )
            )
        elif weeks < 28:
            parts.append(
                _pick(
                    rng,
                    "Anatomy scan at 18–20 weeks; expect fetal movements from about 20 weeks.",
                    "Confirm anomaly scan booked; discuss fetal movements.",
                )
            )
        elif weeks <= 40:
            parts.append(
                _pick(
                    rng,
                    "Discuss birth plan, fetal movements and signs of labour.",
                    "Birth preparation: signs of labour, when to come in, reduced fetal movements.",
                )
            )
        else:
            parts.append(
                _pick(
                    rng,
                    "Past 40 weeks: offer membrane sweep and discuss induction of labour at 41 weeks.",
                    "Post-dates: membrane sweep offered, induction planned from 41 weeks.",
                )
            )
    parts.append(
        _pick(
            rng,
            "Return sooner for bleeding, reduced fetal movements or severe headache.",
            "Next visit as scheduled; seek care early for bleeding or reduced movements.",
        )
    )
    return parts


def to_utc(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
