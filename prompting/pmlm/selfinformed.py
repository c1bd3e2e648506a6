"""Self-informed personalisation: everything her own record says, computed once, explainably."""

from __future__ import annotations

from dataclasses import dataclass, field

from .history import Habit, PatientHistory
from .risk import RiskFlag, ago, risk_flags
from .state import Bmi, Pregnancy, body_mass_index, current_pregnancy, gravida_parity, latest_values
from .trends import Trend, all_trends, care_by_item, care_engagement


@dataclass
class SelfInformed:
    age: int | None
    pregnancy: Pregnancy
    gravida: int | None
    parity: int | None
    gp_basis: str
    bmi: Bmi | None
    flags: list[RiskFlag]
    latest: list[tuple[str, str, int]]
    trends: list[Trend]
    conditions: list[str]
    medicines: list[str]
    allergies: list[str]
    lifestyle: list[Habit] = field(default_factory=list)  # the current value of each behaviour
    preferences: list[Habit] = field(default_factory=list)
    engaged: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def summarise(h: PatientHistory) -> SelfInformed:
    pregnancy = current_pregnancy(h)
    bmi = body_mass_index(h, pregnancy)
    gravida, parity, gp_basis = gravida_parity(h, pregnancy)
    current: dict[str, Habit] = {}
    for habit in sorted(h.habits, key=lambda x: -x.days_ago):
        current[habit.kind] = habit
    engaged, dropped = [], []
    for item, experiences in care_by_item(h.care).items():
        scores = [c.rating for c in experiences]
        verdict = care_engagement(scores)
        text = f"{experiences[0].name} (rated {' → '.join(map(str, scores))})"
        if verdict == "engaged":
            engaged.append(text)
        elif verdict in ("dropped", "fading"):
            dropped.append(text)
    conditions = sorted({d.display or d.code for d in h.diagnoses if d.active and d.onset_days_ago is not None})
    medicines = sorted({m.display or m.code for m in h.medications if m.active and (m.days_ago or 0) <= 365})
    return SelfInformed(
        age=h.age_years,
        pregnancy=pregnancy,
        gravida=gravida,
        parity=parity,
        gp_basis=gp_basis,
        bmi=bmi,
        flags=risk_flags(h, pregnancy),
        latest=latest_values(h),
        trends=all_trends(h, pregnancy, bmi),
        conditions=conditions,
        medicines=medicines,
        allergies=sorted({a.display or a.code for a in h.allergies}),
        lifestyle=[x for x in current.values() if not x.preference],
        preferences=[x for x in current.values() if x.preference],
        engaged=engaged,
        dropped=dropped,
    )


def habit_phrase(habit: Habit) -> str:
    value = habit.value
    if (
        habit.quantity is not None
        and habit.unit
        and str(int(habit.quantity) if habit.quantity == int(habit.quantity) else habit.quantity) not in value
    ):
        value += f" ({habit.quantity:g} {habit.unit})"
    return f"{habit.label.lower()}: {value} ({ago(habit.days_ago)})"
