from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from patients import selectors as patient_selectors
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from prompting.forms import GuidanceForm, PromptForm
from prompting.guidance import GuidanceError, guidance_request_create
from prompting.models import GuidanceRequest
from prompting.pmlm.safety import NOTICE
from prompting.services import PromptError, prompt_build


@require_POST
@login_required
def prompt_panel(request, pk: int):
    """Build the personalised prompt for a typed question and show it with its provenance (HTMX)."""
    membership = patient_selectors.page_membership_for(request.user)
    patient = patient_selectors.patient_get(organisation=membership.organisation, pk=pk)
    form = PromptForm(request.POST)
    context = {"patient": patient, "form": form}
    if form.is_valid():
        try:
            context["prompt"] = prompt_build(patient=patient, question=form.cleaned_data["question"],
                                             at=form.cleaned_data["at"], user=request.user)
        except PromptError as exc:
            context["error"] = str(exc)
    else:
        context["error"] = "; ".join(f"{form.fields[name].label or name}: {' '.join(errors)}" for name, errors in form.errors.items())
    response = render(request, "prompting/_prompt.html", context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _guidance_response(request, patient, guidance=None, error=""):
    response = render(request, "prompting/_guidance.html", {"patient": patient, "guidance": guidance, "error": error, "notice": NOTICE})
    patch_vary_headers(response, ["HX-Request"])
    return response


@require_POST
@login_required
def guidance_create(request, pk: int):
    """Queue a guidance request for the typed question; the panel then follows it (HTMX polling)."""
    membership = patient_selectors.page_membership_for(request.user)
    patient = patient_selectors.patient_get(organisation=membership.organisation, pk=pk)
    form = GuidanceForm(request.POST)
    if not form.is_valid():
        return _guidance_response(request, patient, error="; ".join(f"{form.fields[n].label or n}: {' '.join(e)}" for n, e in form.errors.items()))
    try:
        guidance = guidance_request_create(patient=patient, question=form.cleaned_data["question"], at=form.cleaned_data["at"],
                                           endpoint=form.cleaned_data["endpoint"], use_retrieval=form.cleaned_data["use_retrieval"],
                                           user=request.user)
    except (GuidanceError, PromptError) as exc:
        return _guidance_response(request, patient, error=str(exc))
    return _guidance_response(request, patient, guidance)


@require_GET
@login_required
def guidance_detail(request, pk: int, guidance_id: int):
    membership = patient_selectors.page_membership_for(request.user)
    patient = patient_selectors.patient_get(organisation=membership.organisation, pk=pk)
    guidance = get_object_or_404(GuidanceRequest.objects.select_related("endpoint", "prompt"), pk=guidance_id, patient=patient)
    return _guidance_response(request, patient, guidance)
