"""The rows of the patient list as HTML, written in Python.

The list re-renders on every keystroke of a search, and through the template engine its 25 rows were
half of the page's time (a dozen lookups and filters a row). Every value is escaped by format_html;
dates are formatted as the template's `date:"j M Y"` formats them, in the current time zone."""

from datetime import date

from django.utils import dateformat, timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from patients import models as m
from patients.selectors import patient_age, patient_pregnancy

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
    return format_html('<span class="badge preg">{}+{} wk · T{}</span>', status.weeks, status.days, status.trimester)


def _row(patient: m.Patient, url: str, today: date) -> tuple:
    age = patient_age(patient, today)
    seen = patient.last_encounter_at
    return (
        url,
        patient.family_name,
        patient.given_names,
        DECEASED if patient.deceased_at else "",
        "—" if age is None else age,
        _pregnancy_cell(patient, today),
        dateformat.format(timezone.localtime(seen), "j M Y") if seen else "—",
        _short(patient.external_id),
    )


def patient_rows_html(patients: list[m.Patient], record_url: str, today: date) -> SafeString:
    """One <tr> a patient: her name linking to her record, age, pregnancy, last encounter and patient ID.
    `record_url`: her record's URL without the id ("/patients/")."""
    return format_html_join(
        "\n",
        '<tr><td><a href="{}">{}, {}</a>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="mono">{}</td></tr>',
        (_row(patient, f"{record_url}{patient.pk}/", today) for patient in patients),
    )
