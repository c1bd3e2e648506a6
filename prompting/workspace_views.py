"""The consultation workspace: her record beside the personalised prompt, guidance, ratings and blinded
comparisons. The workspace's other views (the prompt panel, guidance, A/B) are in `views.py`; its URLs in
`workspace_urls.py`, under /patients/<id>/."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from audit.models import AuditAction
from audit.services import audit_recorded_while
from patients import selectors
from prompting.forms import GuidanceForm
from prompting.guidance import guidance_prefill_soon
from prompting.models import LLMEndpoint
from prompting.ratings import ab_kinds_available
from prompting.record_page import record_page_fragments

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
    endpoints = list(LLMEndpoint.objects.filter(active=True))  # read once for the form, A/B and prefill
    guidance_prefill_soon(patient=patient, endpoints=endpoints)  # her prompt's start is read while she is read
    context = {
        "patient": patient,
        "record": record_page_fragments(patient, today),
        "quick_questions": QUICK_QUESTIONS,
        "ab_kinds": ab_kinds_available(patient, endpoints),
        "prompt_form": GuidanceForm(endpoints=endpoints),
        "age": selectors.patient_age(patient, today),
        "mrn": next((i["value"] for i in patient.identifiers if i.get("type") == "MR"), patient.external_id),
    }
    # Her record was read above; the entry is committed while the page renders from it, before the page leaves.
    with audit_recorded_while(AuditAction.VIEW_PATIENT, obj=patient):
        return render(request, "prompting/workspace.html", context)
