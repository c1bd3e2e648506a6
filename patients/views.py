from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from patients import selectors
from patients.forms import PatientSearchForm
from prompting.forms import GuidanceForm
from prompting.pmlm.selfinformed import summarise
from prompting.selectors import patient_history

PAGE_SIZE = 25


def home(request):
    return redirect("patients:list" if request.user.is_authenticated else "login")


@require_GET
@login_required
def patient_list(request):
    membership = selectors.page_membership_for(request.user)
    today = timezone.now().date()
    form = PatientSearchForm(request.GET)
    patients = selectors.patient_list(organisation=membership.organisation, on=today, **form.filters())
    page = Paginator(patients, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"patient": p, "age": selectors.patient_age(p, today), "pregnancy": selectors.patient_pregnancy(p, today)}
        for p in page.object_list
    ]
    context = {"form": form, "page": page, "rows": rows, "query_string": _without_page(request.GET)}
    template = "patients/_results.html" if request.htmx and not request.htmx.boosted else "patients/list.html"
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _without_page(params) -> str:
    params = params.copy()
    params.pop("page", None)
    return params.urlencode()


@require_GET
@login_required
def patient_detail(request, pk: int):
    membership = selectors.page_membership_for(request.user)
    patient = selectors.patient_get(organisation=membership.organisation, pk=pk)
    today = timezone.now().date()
    context = {
        "patient": patient,
        "summary": summarise(patient_history(patient, today)),
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
    return render(request, "patients/detail.html", context)
