"""The patient list writes its rows and filters in Python: the same HTML the templates wrote, escaped the same."""

import re
from datetime import date, datetime, timedelta
from datetime import timezone as tz

import pytest
from django import forms
from django.template import Context, Template
from django.utils import timezone

from patients import models as m
from patients.forms import PatientSearchForm
from patients.list_rows import patient_rows_html
from patients.selectors import patient_age, patient_pregnancy
from patients.widgets import PlainSelect

# The row as the page's template wrote it before the rows were written in Python.
TEMPLATE_ROW = Template(
    "{% for row in rows %}<tr>"
    '<td><a href="{{ row.url }}">{{ row.patient.family_name }}, {{ row.patient.given_names }}</a>'
    '{% if row.patient.deceased_at %} <span class="badge muted-badge">deceased</span>{% endif %}</td>'
    '<td>{{ row.age|default_if_none:"—" }}</td>'
    '<td>{% if row.pregnancy.pregnant %}<span class="badge preg">{{ row.pregnancy.weeks }}+{{ row.pregnancy.days }}'
    ' wk · T{{ row.pregnancy.trimester }}</span>{% else %}<span class="muted">—</span>{% endif %}</td>'
    '<td>{{ row.patient.last_encounter_at|date:"j M Y"|default:"—" }}</td>'
    '<td class="mono">{{ row.patient.external_id|truncatechars:14 }}</td>'
    "</tr>{% endfor %}"
)


def _squeezed(html: str) -> str:
    return re.sub(r">\s+<", "><", str(html)).strip()


def test_every_filter_control_is_written_as_djangos_widget_templates_write_it():
    for data in ({}, {"q": "Ana <b>\"&'", "pregnant": "yes", "trimester": "2", "who": "everyone"}, {"trimester": "9"}):
        form = PatientSearchForm(data)
        for name in form.fields:
            ours = str(form[name])
            widget = form[name].field.widget
            widget.__class__ = forms.Select if isinstance(widget, PlainSelect) else forms.TextInput
            assert ours == str(form[name]), name


def test_a_select_with_option_groups_is_refused_rather_than_written_wrong():
    with pytest.raises(ValueError):
        PlainSelect(choices=[("Group", [("a", "A")])]).render("x", "a")


@pytest.mark.parametrize("zone", ["UTC", "Pacific/Auckland"])
def test_rows_say_what_the_template_said_escaped_and_dated_in_her_clinics_time_zone(organisation, settings, zone):
    settings.TIME_ZONE = zone
    timezone.activate(zone)
    today = date(2026, 6, 1)
    patients = [
        m.Patient(
            pk=1,
            organisation=organisation,
            external_id="ext-0123456789abcdef",
            family_name="<script>alert(1)</script>",
            given_names='Ana "Lu" & Co',
            birth_date=date(1990, 7, 1),
            pregnancy_start=today - timedelta(weeks=20, days=3),
            last_encounter_at=datetime(2026, 5, 31, 22, 30, tzinfo=tz.utc),  # already 1 June in Auckland
        ),
        m.Patient(
            pk=2,
            organisation=organisation,
            external_id="short",
            family_name="Zimmer",
            given_names="Eva",
            deceased_at=datetime(2020, 1, 1, tzinfo=tz.utc),
        ),
    ]
    rows = [
        {
            "patient": p,
            "url": f"/patients/{p.pk}/",
            "age": patient_age(p, today),
            "pregnancy": patient_pregnancy(p, today),
        }
        for p in patients
    ]
    ours = patient_rows_html(patients, "/patients/", today)
    assert _squeezed(ours) == _squeezed(TEMPLATE_ROW.render(Context({"rows": rows})))
    assert "<script>" not in ours and "&lt;script&gt;" in ours
    assert "20+3 wk · T2" in ours and "deceased" in ours and "ext-012345678…" in ours
    assert ("1 Jun 2026" if zone == "Pacific/Auckland" else "31 May 2026") in ours
    timezone.deactivate()


def test_no_patients_no_rows():
    assert patient_rows_html([], "/patients/", date(2026, 6, 1)) == ""
