"""The rows of the patient list as HTML, written in Python.

The list re-renders on every keystroke of a search, and through the template engine its 25 rows were
half of the page's time (a dozen lookups and filters a row). Every value is escaped as the template
escaped it (`patients.widgets.escaped`); dates are written as the template's `date:"j M Y"` wrote them,
in the current time zone and language."""

from datetime import date, datetime

from django.utils import timezone
from django.utils.dates import MONTHS_3
from django.utils.safestring import SafeString, mark_safe

from patients import models as m
from patients.selectors import patient_age, patient_pregnancy
from patients.widgets import escaped

ID_CHARS = 14  # the list shows the start of her patient ID; her record shows all of it
NOT_PREGNANT = mark_safe('<span class="muted">—</span>')
UNDATED = mark_safe(
    '<span class="badge preg" title="Antenatal care or a pregnancy-only finding in the last 8 weeks">'
    "pregnant · GA not recorded</span>"
)
DECEASED = mark_safe(' <span class="badge muted-badge">deceased</span>')


def _short(text: str, chars: int = ID_CHARS) -> str:
    return text if len(text) <= chars else text[: chars - 1] + "…"


def _pregnancy_cell(patient: m.Patient, today: date) -> SafeString:
    status = patient_pregnancy(patient, today)
    if not status.pregnant:
        return NOT_PREGNANT
    if not status.dated:
        return UNDATED
    return mark_safe(f'<span class="badge preg">{status.weeks:d}+{status.days:d} wk · T{status.trimester:d}</span>')


def _day(moment: datetime, months: dict[int, str]) -> str:
    """As `date:"j M Y"`: "4 Mar 2026", the month in the active language."""
    local = timezone.localtime(moment)
    return f"{local.day} {months[local.month]} {local.year}"


def _row(patient: m.Patient, url: str, today: date, months: dict[int, str]) -> str:
    age = patient_age(patient, today)
    seen = patient.last_encounter_at
    return (
        f'<tr><td><a href="{escaped(url)}">{escaped(patient.family_name)}, {escaped(patient.given_names)}</a>'
        f"{DECEASED if patient.deceased_at else ''}</td>"
        f"<td>{'—' if age is None else escaped(age)}</td>"
        f"<td>{_pregnancy_cell(patient, today)}</td>"
        f"<td>{escaped(_day(seen, months)) if seen else '—'}</td>"
        f'<td class="mono">{escaped(_short(patient.external_id))}</td></tr>'
    )


def patient_rows_html(patients: list[m.Patient], record_url: str, today: date) -> SafeString:
    """One <tr> a patient: her name linking to her record, age, pregnancy, last encounter and patient ID.
    `record_url`: her record's URL without the id ("/patients/")."""
    months = {number: str(name).title() for number, name in MONTHS_3.items()}  # as dateformat's "M"
    return mark_safe("\n".join(_row(patient, f"{record_url}{patient.pk}/", today, months) for patient in patients))
