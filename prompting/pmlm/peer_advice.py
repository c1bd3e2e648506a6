"""What similar patients' physicians advised, and what helped them, in a situation like hers.

Peers' advice and care ratings are kept by the situation they were written in: the peer's own
pregnancy on that day — not pregnant, or pregnant, with the trimester when her gestational age is
known. The prompt then reads only what comes from her situation at the consultation:

- physicians' advice: written while not pregnant for a woman who is not pregnant; written in the
  same trimester for a pregnant woman; written at any pregnant visit when her gestational age is
  not recorded;
- care items that helped: rated while pregnant, or while not pregnant, as she is now (a care item
  is rated at follow-up, often across trimesters, and two raters per trimester are rarely found).

When nothing comes from a comparable situation the prompt says so instead of borrowing: a woman
who is not pregnant never reads her peers' antenatal advice. No Django import.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Mapping
from datetime import date, datetime

from .history import PatientHistory
from .state import Pregnancy, current_pregnancy

NOT_PREGNANT, PREGNANT = "not_pregnant", "pregnant"
CARE_SITUATIONS = (NOT_PREGNANT, PREGNANT)
MIN_RATERS, HELPED_MEAN = 2, 3.5

Situations = tuple[str, ...]


def record_situations(pregnancy: Pregnancy) -> Situations:
    """The situations a record written in this pregnancy state belongs to."""
    if not pregnancy.pregnant:
        return (NOT_PREGNANT,)
    if pregnancy.trimester is None:
        return (PREGNANT,)
    return (PREGNANT, f"trimester_{pregnancy.trimester}")


def advice_situation(pregnancy: Pregnancy) -> str:
    """The situation whose physicians' advice is comparable to hers."""
    if not pregnancy.pregnant:
        return NOT_PREGNANT
    return PREGNANT if pregnancy.trimester is None else f"trimester_{pregnancy.trimester}"


def care_situation(pregnancy: Pregnancy) -> str:
    return PREGNANT if pregnancy.pregnant else NOT_PREGNANT


def situation_words(situation: str) -> str:
    if situation.startswith("trimester_"):
        return f"pregnant, trimester {situation.removeprefix('trimester_')}"
    return situation.replace("_", " ")


class SituationsAt:
    """Each patient's situation on any day up to `on`, from her record read once as of `on`
    (only what dates pregnancies is needed; see prompting.selectors.pregnancy_histories)."""

    def __init__(self, histories: Mapping[int, PatientHistory], on: date):
        self.histories, self.on = histories, on
        self._cache: dict[tuple[int, date], Situations] = {}

    def __call__(self, patient: int, when: date | datetime) -> Situations:
        day = when.date() if isinstance(when, datetime) else when
        key = (patient, day)
        if key not in self._cache:
            history = self.histories.get(patient) or PatientHistory(age_years=None)
            self._cache[key] = record_situations(current_pregnancy(history.as_of((self.on - day).days)))
        return self._cache[key]


def advice_shares(
    advice: Mapping[int, list[tuple[Situations, set[str]]]], neighbour_ids, top: int = 5
) -> dict[str, list[list]]:
    """For each situation, the key items their physicians recommended most often there, with the
    share of the neighbours who had advice written in that situation."""
    per_situation: dict[str, dict[int, set[str]]] = defaultdict(lambda: defaultdict(set))
    for n in neighbour_ids:
        for situations, items in advice.get(n, ()):
            if items:
                for situation in situations:
                    per_situation[situation][n] |= items
    shares = {}
    for situation, by_neighbour in per_situation.items():
        counts = Counter(item for items in by_neighbour.values() for item in items)
        ranked = sorted(counts.items(), key=lambda c: (-c[1], c[0]))[:top]
        shares[situation] = [[item, round(count / len(by_neighbour), 2)] for item, count in ranked]
    return shares


def helped_shares(
    ratings: Mapping[int, list[tuple[Situations, str, float]]], neighbour_ids, top: int = 5
) -> dict[str, list[list]]:
    """For pregnant and not pregnant, the care items at least two neighbours rated in that
    situation with a mean of 3.5 or more, best first; each neighbour's latest rating there counts
    (`ratings` in time order)."""
    latest: dict[str, dict[tuple[int, str], float]] = defaultdict(dict)
    for n in neighbour_ids:
        for situations, item, rating in ratings.get(n, ()):
            for situation in situations:
                if situation in CARE_SITUATIONS:
                    latest[situation][(n, item)] = rating
    helped = {}
    for situation, by_rater in latest.items():
        scores: dict[str, list[float]] = defaultdict(list)
        for (_, item), rating in by_rater.items():
            scores[item].append(rating)
        ranked = sorted(
            ([item, round(sum(v) / len(v), 2), len(v)] for item, v in scores.items() if len(v) >= MIN_RATERS),
            key=lambda h: (-h[1], -h[2], h[0]),
        )
        helped[situation] = [h for h in ranked if h[1] >= HELPED_MEAN][:top]
    return helped


def by_situation(stored, convert: Callable, limit: int) -> dict[str, list]:
    """Stored peer advice, by situation, each row converted. A plain list was stored before the
    situation was kept: nothing in it is known to be comparable, so nothing of it is used."""
    if not isinstance(stored, Mapping):
        return {}
    return {situation: [convert(row) for row in rows[:limit]] for situation, rows in stored.items()}
