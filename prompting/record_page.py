"""Her record page's clinical part (pregnancy status, risk flags and trends, charts, peers, the record's lists),
rendered once and cached under her record version.

Every write to her record raises `Patient.record_version` in the writer's transaction (patients.signals for
single rows; the importer, demo data and peer training for bulk writes), and the key also carries the day (her
gestational age and the rules that need it move with it). A cached rendering therefore never outlives a change;
`PMLM_RECORD_CACHE_SECONDS` bounds how long one is kept at all (0: never cached). The fragments hold no name or
identifier and nothing per user or per request; the page around them (her name, the consultation form, the
CSRF token) is rendered for each request."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.core.cache import cache
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from patients import models as pm
from patients import selectors
from pmlm_site.charts import line_chart
from prompting.peer_models import peer_summary_for
from prompting.pmlm.selfinformed import summarise
from prompting.pmlm.series import pregnancy_series
from prompting.selectors import patient_history

FRAGMENTS = ("status", "flags", "body")
# Raise when the fragments' templates or what they show change, so no process reads a rendering of the old ones.
FORMAT = 1


def record_page_key(patient: pm.Patient, today: date) -> str:
    return f"record-page:{FORMAT}:{patient.pk}:{patient.record_version}:{today.isoformat()}"


def record_page_fragments(patient: pm.Patient, today: date) -> dict[str, SafeString]:
    """{"status", "flags", "body"}: her record page's clinical HTML as of `today`, from the cache when her
    record has not changed since it was rendered."""
    seconds = settings.PMLM_RECORD_CACHE_SECONDS
    key = record_page_key(patient, today)
    fragments = cache.get(key) if seconds > 0 else None
    if fragments is None:
        context = _record_context(patient, today)
        fragments = {name: render_to_string(f"prompting/_record_{name}.html", context) for name in FRAGMENTS}
        if seconds > 0:
            cache.set(key, fragments, seconds)
    return {name: mark_safe(html) for name, html in fragments.items()}  # noqa: S308 - rendered by our templates


def _record_context(patient: pm.Patient, today: date) -> dict:
    history = patient_history(patient, today)
    summary = summarise(history)
    peer = peer_summary_for(patient)[0]
    return {
        "patient": patient,
        "summary": summary,
        "pregnancy": selectors.patient_pregnancy(patient, today),
        "charts": _pregnancy_charts(patient, history, today),
        "peer": peer.situated(summary.pregnancy) if peer else None,  # her peers' advice from situations like hers
        "latest_observations": selectors.patient_latest_observations(patient),
        "encounters": selectors.patient_encounters(patient),
        "conditions": patient.condition_set.order_by("abatement_at", "-onset_at"),
        "medication_requests": patient.medicationrequest_set.order_by("-authored_at")[:30],
        "medication_statements": patient.medicationstatement_set.order_by("-effective_start")[:30],
        "allergies": patient.allergyintolerance_set.all(),
        "lifestyle": selectors.patient_lifestyle_timeline(patient),
        "care_history": selectors.patient_care_history(patient),
    }


def _pregnancy_charts(patient, history, today) -> list:
    """Blood pressure, weight and haemoglobin over gestational age in her latest pregnancy."""
    if patient.pregnancy_start is None:
        return []
    started = (today - patient.pregnancy_start).days
    ended = (today - patient.pregnancy_end).days if patient.pregnancy_end else None
    if started < 0:
        return []
    charts = pregnancy_series(history, started_days_ago=started, ended_days_ago=ended)
    return [
        {
            "key": key,
            "title": chart["title"],
            "svg": line_chart(
                chart["series"],
                title=f"{chart['title']} over gestational age",
                x_label="gestational week",
                y_label=chart["unit"],
                width=520,
                height=220,
                x_range=(0, 42),
            ),
        }
        for key, chart in charts.items()
    ]
