"""The consultation workspace: her record beside the personalised prompt, guidance, ratings and blinded
comparisons. The workspace's other views (the prompt panel, guidance, A/B) are in `views.py`; its URLs in
`workspace_urls.py`, under /patients/<id>/."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.models import AuditAction
from audit.services import audit_record
from patients import selectors
from pmlm_site.charts import line_chart
from prompting.forms import GuidanceForm
from prompting.guidance import guidance_prefill_soon
from prompting.peer_models import peer_summary_for
from prompting.pmlm.selfinformed import summarise
from prompting.pmlm.series import pregnancy_series
from prompting.ratings import ab_kinds_available
from prompting.selectors import patient_history

QUICK_QUESTIONS = [
    ("Next-visit plan", "What should we plan for her next visit, given her risk flags and trends?"),
    (
        "Medication review",
        "Review her current medicines for safety in pregnancy: what should continue, change or stop?",
    ),
    (
        "Lifestyle counselling",
        (
            "How should we counsel her on lifestyle (diet, activity, smoking, alcohol, caffeine), given her history "
            "and preferences?"
        ),
    ),
    (
        "Explain results",
        "Explain her latest results and what they mean for her pregnancy, in words she can understand.",
    ),
]


@require_GET
@login_required
def patient_workspace(request, pk: int):
    membership = selectors.page_membership_for(request.user)
    patient = selectors.patient_get(organisation=membership.organisation, pk=pk)
    today = timezone.now().date()
    audit_record(AuditAction.VIEW_PATIENT, obj=patient)
    guidance_prefill_soon(patient=patient)  # her prompt's start is read while the clinician reads her record
    history = patient_history(patient, today)
    summary = summarise(history)
    peer = peer_summary_for(patient)[0]
    context = {
        "patient": patient,
        "summary": summary,
        "quick_questions": QUICK_QUESTIONS,
        "ab_kinds": ab_kinds_available(patient),
        "charts": _pregnancy_charts(patient, history, today),
        "peer": peer.situated(summary.pregnancy) if peer else None,  # her peers' advice from situations like hers
        "prompt_form": GuidanceForm(),
        "age": selectors.patient_age(patient, today),
        "pregnancy": selectors.patient_pregnancy(patient, today),
        "latest_observations": selectors.patient_latest_observations(patient),
        "encounters": selectors.patient_encounters(patient),
        "conditions": patient.condition_set.order_by("abatement_at", "-onset_at"),
        "medication_requests": patient.medicationrequest_set.order_by("-authored_at")[:30],
        "medication_statements": patient.medicationstatement_set.order_by("-effective_start")[:30],
        "allergies": patient.allergyintolerance_set.all(),
        "lifestyle": selectors.patient_lifestyle_timeline(patient),
        "care_history": selectors.patient_care_history(patient),
        "mrn": next((i["value"] for i in patient.identifiers if i.get("type") == "MR"), patient.external_id),
    }
    return render(request, "prompting/workspace.html", context)


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
