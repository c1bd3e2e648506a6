from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from audit.models import AuditAction
from audit.services import audit_recorded_while
from patients import selectors
from patients.forms import PatientSearchForm
from patients.list_rows import patient_rows_html
from pmlm_site.paging import KeptRows, OneQueryPaginator

PAGE_SIZE = 25


def home(request):
    return redirect("patients:list" if request.user.is_authenticated else "login")


@require_GET
@login_required
def patient_list(request):
    membership = selectors.page_membership_for(request.user)
    today = timezone.now().date()
    form = PatientSearchForm(request.GET)
    filters = form.filters()

    def rows():
        return selectors.patient_rows(selectors.patient_list(organisation=membership.organisation, on=today, **filters))

    if not filters["query"]:  # built from her organisation, the day and the filters alone: SQL compiled once for them
        listed = KeptRows(("patient list page", membership.organisation_id, today, *filters.items()), rows)
    else:  # searches differ keystroke by keystroke, and their words stay out of kept SQL
        listed = rows()
    page = OneQueryPaginator(listed, PAGE_SIZE).get_page(request.GET.get("page"))
    record_url = reverse("workspace:patient", args=[0]).removesuffix("0/")  # one reversal, not one per row
    patients = list(page.object_list)
    # Which patients were shown, by database id; the search text may be a name: only that a search was made is
    # recorded. The entry is committed while the page renders from what was read (nothing more is read).
    with audit_recorded_while(
        AuditAction.VIEW_PATIENT_LIST,
        details={
            "page": page.number,
            "shown": len(patients),
            "patients": [patient.pk for patient in patients],
            "searched": bool(request.GET.get("q")),
        },
    ):
        context = {
            "form": form,
            "page": page,
            "patients": patients,
            "rows": patient_rows_html(patients, record_url, today),
            "query_string": _without_page(request.GET),
        }
        template = "patients/_results.html" if request.htmx and not request.htmx.boosted else "patients/list.html"
        response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _without_page(params) -> str:
    params = params.copy()
    params.pop("page", None)
    return params.urlencode()
