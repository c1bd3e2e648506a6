"""Pregnancy status at a date from the stored episode. Plain Python, no Django import."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from prompting.pmlm.codes import MAX_PREGNANCY_DAYS, UNDATED_PREGNANCY_EVIDENCE_DAYS

TRIMESTER_STARTS = {1: 0, 2: 14, 3: 28}  # completed weeks at which each trimester begins


@dataclass(frozen=True)
class PregnancyStatus:
    pregnant: bool
    weeks: int | None = None
    days: int | None = None
    trimester: int | None = None

    @property
    def dated(self) -> bool:
        return self.pregnant and self.weeks is not None

    @property
    def label(self) -> str:
        if not self.pregnant:
            return "Not pregnant"
        if not self.dated:
            return "Pregnant, gestational age not recorded"
        return f"{self.weeks}+{self.days} weeks · trimester {self.trimester}"


def trimester_for_weeks(weeks: int) -> int:
    return 3 if weeks >= 28 else 2 if weeks >= 14 else 1


def pregnancy_status(start: date | None, end: date | None, on: date, evidence: date | None = None) -> PregnancyStatus:
    """Pregnant on `on` when her pregnancy started on or before it and had not ended; or, undated (`evidence`: the
    last antenatal care or pregnancy-only finding that proves it), within UNDATED_PREGNANCY_EVIDENCE_DAYS of it.

    A pregnancy nothing closed is taken to last at most MAX_PREGNANCY_DAYS.
    """
    if start is None and evidence is not None:
        return PregnancyStatus(undated_pregnant_on(evidence, on))
    if start is None or start > on or (end is not None and end <= on):
        return PregnancyStatus(False)
    elapsed = (on - start).days
    if elapsed > MAX_PREGNANCY_DAYS:
        return PregnancyStatus(False)
    weeks, days = divmod(elapsed, 7)
    return PregnancyStatus(True, weeks, days, trimester_for_weeks(weeks))


def undated_pregnant_on(evidence: date, on: date) -> bool:
    return evidence <= on <= evidence + timedelta(days=UNDATED_PREGNANCY_EVIDENCE_DAYS)


def start_window_for_trimester(trimester: int, on: date) -> tuple[date, date]:
    """Episode starts (exclusive lower, inclusive upper) that put `on` in this trimester."""
    upper = on - timedelta(weeks=TRIMESTER_STARTS[trimester])
    lower = (
        on - timedelta(weeks=TRIMESTER_STARTS[trimester + 1])
        if trimester < 3
        else on - timedelta(days=MAX_PREGNANCY_DAYS + 1)
    )
    return lower, upper
