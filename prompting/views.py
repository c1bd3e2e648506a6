from django.contrib.auth.decorators import login_required
from django.shortcuts import render
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_POST

from patients import selectors as patient_selectors
from prompting.forms import PromptForm
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
