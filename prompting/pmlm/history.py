"""The de-identified view of one patient's record that the method reads.

Built by a selector from the database *as of* the consultation date: nothing recorded after it
is included, and every time is relative to it (days before the consultation). No names,
identifiers, contacts, addresses or dates: the age in years stands for the birth date.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Reading:
    """One observation value (or one component of a panel) with its age in days."""

    code: str
    days_ago: int
    quantity: float | None = None
    unit: str = ""
    value_code: str = ""
    value_display: str = ""
    value_string: str = ""
    value_boolean: bool | None = None
    display: str = ""
    encounter: int | None = None  # opaque key: readings of one encounter share it
    sequence: int = 0  # order within the same time (a repeat reading has a larger sequence)
    system: str = ""


@dataclass(frozen=True)
class Diagnosis:
    code: str
    display: str
    onset_days_ago: int | None
    abated_days_ago: int | None = None  # None: not abated as of the consultation
    clinical_status: str = ""

    @property
    def active(self) -> bool:
        return self.abated_days_ago is None and self.clinical_status not in (
            "resolved",
            "inactive",
            "remission",
            "entered-in-error",
        )


@dataclass(frozen=True)
class ProcedureDone:
    code: str
    display: str
    days_ago: int | None


@dataclass(frozen=True)
class Medication:
    code: str
    display: str
    status: str
    days_ago: int | None
    source: str = "prescribed"  # or "reported"

    @property
    def active(self) -> bool:
        return self.status in ("active", "on-hold", "intended", "unknown", "")


@dataclass(frozen=True)
class Allergy:
    code: str
    display: str
    criticality: str = ""
    category: str = ""


@dataclass(frozen=True)
class Visit:
    code: str
    display: str
    days_ago: int
    prenatal: bool = False
    key: int | None = None


@dataclass(frozen=True)
class Habit:
    """A lifestyle behaviour or preference recorded at a time."""

    kind: str
    label: str
    value: str
    days_ago: int
    quantity: float | None = None
    unit: str = ""
    preference: bool = False


@dataclass(frozen=True)
class CareExperience:
    item: str  # care item slug
    name: str
    rating: int
    days_ago: int


@dataclass
class PatientHistory:
    age_years: int | None
    readings: list[Reading] = field(default_factory=list)
    diagnoses: list[Diagnosis] = field(default_factory=list)
    procedures: list[ProcedureDone] = field(default_factory=list)
    medications: list[Medication] = field(default_factory=list)
    allergies: list[Allergy] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)
    habits: list[Habit] = field(default_factory=list)
    care: list[CareExperience] = field(default_factory=list)
    lmp_days_ago: int | None = None  # last menstrual period, when recorded
    language: str = ""
    deceased: bool = False

    def of(self, *codes_or_sets) -> list[Reading]:
        """Readings of these codes, most recent first (repeat readings: later sequence first)."""
        wanted: set[str] = set()
        for c in codes_or_sets:
            wanted |= {c} if isinstance(c, str) else set(c)
        return sorted((r for r in self.readings if r.code in wanted), key=lambda r: (r.days_ago, -r.sequence))

    def latest(self, *codes_or_sets) -> Reading | None:
        found = self.of(*codes_or_sets)
        return found[0] if found else None

    def diagnosed(self, code_set) -> list[Diagnosis]:
        return [d for d in self.diagnoses if d.code in code_set]

    def as_of(self, days_before: int) -> PatientHistory:
        """The record as it stood `days_before` days before the consultation, with every time counted
        from then: what was recorded later is left out, and a condition that abated later was active."""
        if days_before <= 0:
            return self
        d = days_before

        def kept(days_ago: int | None) -> bool:
            return days_ago is None or days_ago >= d

        def shifted(days_ago: int | None) -> int | None:
            return None if days_ago is None else days_ago - d

        diagnoses = []
        for x in self.diagnoses:
            if not kept(x.onset_days_ago):
                continue
            if x.abated_days_ago is not None and x.abated_days_ago < d:
                diagnoses.append(
                    replace(x, onset_days_ago=shifted(x.onset_days_ago), abated_days_ago=None, clinical_status="active")
                )
            else:
                diagnoses.append(
                    replace(x, onset_days_ago=shifted(x.onset_days_ago), abated_days_ago=shifted(x.abated_days_ago))
                )
        return PatientHistory(
            age_years=self.age_years,
            readings=[replace(r, days_ago=r.days_ago - d) for r in self.readings if r.days_ago >= d],
            diagnoses=diagnoses,
            procedures=[replace(x, days_ago=shifted(x.days_ago)) for x in self.procedures if kept(x.days_ago)],
            medications=[replace(x, days_ago=shifted(x.days_ago)) for x in self.medications if kept(x.days_ago)],
            allergies=list(self.allergies),
            visits=[replace(x, days_ago=x.days_ago - d) for x in self.visits if x.days_ago >= d],
            habits=[replace(x, days_ago=x.days_ago - d) for x in self.habits if x.days_ago >= d],
            care=[replace(x, days_ago=x.days_ago - d) for x in self.care if x.days_ago >= d],
            lmp_days_ago=self.lmp_days_ago - d if self.lmp_days_ago is not None and self.lmp_days_ago >= d else None,
            language=self.language,
            deceased=False,
        )
