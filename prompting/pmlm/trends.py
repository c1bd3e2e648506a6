"""How she is changing: blood pressure, weight gain, haemoglobin, adherence, lifestyle and
preferences, each explained in words with a short forecast for the next visit.

Forecasts are deliberately simple and explainable: a least-squares line through her own
readings, extrapolated to a visit two weeks ahead, and only when there are enough readings.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import codes
from .history import CareExperience, Habit, PatientHistory
from .risk import ago
from .state import Bmi, Pregnancy, blood_pressures, latest_quantity
from .units import to_g_dl, to_kg

NEXT_VISIT_DAYS = 14
WINDOW_DAYS = 365

# Institute of Medicine (2009) gestational weight gain: total range (kg) and weekly rate in the
# second and third trimesters (kg/week), by pre-pregnancy BMI category.
IOM_GAIN = {
    "underweight": ((12.5, 18.0), (0.44, 0.58)),
    "normal weight": ((11.5, 16.0), (0.35, 0.50)),
    "overweight": ((7.0, 11.5), (0.23, 0.33)),
    "obese": ((5.0, 9.0), (0.17, 0.27)),
}
FIRST_TRIMESTER_GAIN = (0.5, 2.0)


@dataclass(frozen=True)
class Trend:
    topic: str
    text: str
    forecast: str = ""
    concerning: bool = False

    def as_dict(self) -> dict:
        return {"topic": self.topic, "text": self.text, "forecast": self.forecast, "concerning": self.concerning}


def _slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of value over time (x in days)."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var = sum((x - mean_x) ** 2 for x, _ in points)
    if var == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var


def _window(pregnancy: Pregnancy) -> int:
    return pregnancy.window_days if pregnancy.pregnant else WINDOW_DAYS


def blood_pressure_trend(h: PatientHistory, pregnancy: Pregnancy) -> Trend | None:
    per_visit = {}
    for bp in blood_pressures(h):  # most recent first; the first per visit is the one that decides
        if bp.days_ago <= _window(pregnancy):
            per_visit.setdefault(bp.days_ago, bp)
    readings = sorted(per_visit.values(), key=lambda bp: -bp.days_ago)
    if len(readings) < 3:
        return None
    points = [(-bp.days_ago, bp.systolic) for bp in readings]
    slope_week = _slope(points) * 7
    first, last = readings[0], readings[-1]
    span_weeks = max(1, round((first.days_ago - last.days_ago) / 7))
    change = last.systolic - first.systolic
    projected = last.systolic + _slope(points) * (NEXT_VISIT_DAYS + last.days_ago)
    if slope_week >= 1.0 and change >= 8:
        direction, concerning = "rising", True
    elif slope_week <= -1.0 and change <= -8:
        direction, concerning = "falling", False
    else:
        direction, concerning = "stable", False
    text = (
        f"Systolic blood pressure {direction} across {len(readings)} visits: "
        f"{first.systolic:.0f} → {last.systolic:.0f} mmHg over {span_weeks} weeks ({slope_week:+.1f} mmHg/week); "
        f"latest {last.systolic:.0f}/{last.diastolic:.0f} mmHg."
    )
    forecast = (
        f"At this rate about {projected:.0f} mmHg systolic at a visit in two weeks." if direction != "stable" else ""
    )
    if direction == "rising" and projected >= 140 > last.systolic:
        forecast += " That would cross the 140 mmHg hypertension threshold."
    return Trend("blood pressure", text, forecast, concerning)


def weight_gain_trend(h: PatientHistory, pregnancy: Pregnancy, bmi: Bmi | None) -> Trend | None:
    if not pregnancy.dated or bmi is None or pregnancy.weeks < 4:  # the expected gain depends on the week
        return None
    baseline = latest_quantity(h, codes.PRE_PREGNANCY_WEIGHT, to_kg)
    if baseline is None:
        before = [r for r in h.of(codes.WEIGHT) if r.quantity is not None and r.days_ago > pregnancy.gestational_days]
        if not before or before[0].days_ago - pregnancy.gestational_days > 365:
            return None
        baseline = (to_kg(before[0].quantity, before[0].unit), before[0])
    current = [r for r in h.of(codes.WEIGHT) if r.quantity is not None and pregnancy.started_within(r.days_ago)]
    if not current or baseline[0] is None:
        return None
    weight_now = to_kg(current[0].quantity, current[0].unit)
    weeks_at = (pregnancy.gestational_days - current[0].days_ago) / 7
    gain = weight_now - baseline[0]
    (total_lo, total_hi), (rate_lo, rate_hi) = IOM_GAIN[bmi.category]
    if weeks_at <= 13:
        lo, hi = FIRST_TRIMESTER_GAIN[0] * weeks_at / 13, FIRST_TRIMESTER_GAIN[1] * weeks_at / 13
    else:
        lo, hi = (
            FIRST_TRIMESTER_GAIN[0] + rate_lo * (weeks_at - 13),
            FIRST_TRIMESTER_GAIN[1] + rate_hi * (weeks_at - 13),
        )
    position = "above" if gain > hi + 0.05 else "below" if gain < lo - 0.05 else "within"
    text = (
        f"Weight gain {gain:.1f} kg at {weeks_at:.0f} weeks, {position} the {lo:.1f}–{hi:.1f} kg expected by then "
        f"for her pre-pregnancy BMI category ({bmi.category}; recommended total {total_lo:g}–{total_hi:g} kg)."
    )
    forecast = ""
    if weeks_at > 13:
        rate = gain / weeks_at
        projected = gain + rate * max(0.0, 40 - weeks_at)
        forecast = (
            f"At her average rate ({rate:.2f} kg/week) the total would reach about {projected:.0f} kg by 40 weeks."
        )
    return Trend("weight gain", text, forecast, concerning=position != "within")


def haemoglobin_trend(h: PatientHistory, pregnancy: Pregnancy) -> Trend | None:
    readings = [
        (r, to_g_dl(r.quantity, r.unit))
        for r in h.of(codes.HAEMOGLOBIN)
        if r.quantity is not None and r.days_ago <= max(_window(pregnancy), WINDOW_DAYS)
    ]
    readings = [(r, v) for r, v in readings if v is not None]
    if len(readings) < 2:
        return None
    readings.sort(key=lambda item: -item[0].days_ago)
    (first, first_value), (last, last_value) = readings[0], readings[-1]
    change = last_value - first_value
    if abs(change) < 0.5:
        return Trend("haemoglobin", f"Haemoglobin stable around {last_value:.1f} g/dL ({len(readings)} results).")
    direction = "falling" if change < 0 else "rising"
    text = f"Haemoglobin {direction}: {first_value:.1f} → {last_value:.1f} g/dL since {ago(first.days_ago)}."
    forecast = ""
    if direction == "falling":
        slope = _slope([(-r.days_ago, v) for r, v in readings])
        projected = last_value + slope * (NEXT_VISIT_DAYS + last.days_ago)
        forecast = f"At this rate about {projected:.1f} g/dL in two weeks" + (
            " — below the 11 g/dL anaemia threshold." if projected < 11 <= last_value else "."
        )
    return Trend("haemoglobin", text, forecast, concerning=direction == "falling")


def care_engagement(scores: list[int]) -> str:
    """What she engaged with and what she dropped, from her ratings of one care item in time order."""
    if (len(scores) >= 2 and scores[-1] <= scores[0] - 2) or scores[-1] <= 2:
        return "dropped"
    if len(scores) >= 2 and scores[-1] < scores[0]:
        return "fading"
    return "engaged" if scores[-1] >= 4 else "mixed"


def care_by_item(care: list[CareExperience]) -> dict[str, list[CareExperience]]:
    by_item: dict[str, list[CareExperience]] = {}
    for experience in sorted(care, key=lambda c: -c.days_ago):
        by_item.setdefault(experience.item, []).append(experience)
    return by_item


def adherence_trends(h: PatientHistory) -> list[Trend]:
    out = []
    for item, experiences in care_by_item(h.care).items():
        if len(experiences) < 2:
            continue
        scores = [c.rating for c in experiences]
        if scores[-1] < scores[0]:
            out.append(
                Trend(
                    "adherence",
                    f"Adherence falling for {experiences[0].name.lower()}: rated {' → '.join(map(str, scores))}, "
                    f"first {ago(experiences[0].days_ago)}.",
                    "Likely to lapse without support at the next visit." if scores[-1] <= 2 else "",
                    True,
                )
            )
    return out


def habit_changes(h: PatientHistory, within_days: int = 730) -> list[Trend]:
    """What changed in her behaviours and preferences, and when."""
    by_kind: dict[str, list[Habit]] = {}
    for habit in sorted(h.habits, key=lambda x: -x.days_ago):
        by_kind.setdefault(habit.kind, []).append(habit)
    out = []
    for kind, habits in by_kind.items():
        recent = [x for x in habits if x.days_ago <= within_days]
        changes = [
            (a, b) for a, b in zip(habits, habits[1:]) if (a.value, a.quantity) != (b.value, b.quantity) and b in recent
        ]
        if not changes:
            continue
        before, after = changes[0][0], changes[-1][1]
        topic = "preference" if after.preference else "lifestyle"
        out.append(
            Trend(
                topic,
                f"{after.label}: {_habit_text(before)} → {_habit_text(after)} ({ago(after.days_ago)})"
                + (f", {len(changes)} changes" if len(changes) > 1 else "")
                + ".",
            )
        )
    return out


def _habit_text(habit: Habit) -> str:
    if habit.quantity is not None and habit.unit:
        return f"{habit.value} ({habit.quantity:g} {habit.unit})"
    return habit.value


def all_trends(h: PatientHistory, pregnancy: Pregnancy, bmi: Bmi | None) -> list[Trend]:
    found = [blood_pressure_trend(h, pregnancy), weight_gain_trend(h, pregnancy, bmi), haemoglobin_trend(h, pregnancy)]
    return [t for t in found if t is not None] + adherence_trends(h) + habit_changes(h)
