"""Refinement run pages for curators: start a run, watch it, read its curve and validation, promote it."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.models import AuditAction
from audit.services import audit_record
from patients.models import Patient
from patients.selectors import curation_membership_for, get_or_404_audited
from pmlm_site.charts import line_chart
from pmlm_site.textdiff import diff_html
from prompting.forms import RefinementRunForm
from prompting.models import RefinementRun
from prompting.pmlm.training import default_config
from prompting.refinement import (
    RefinementError, refinement_run_cancel, refinement_run_create, refinement_run_demote, refinement_run_promote,
    refinement_run_queue,
)
from prompting.views import fragment


def _run_for(request, pk: int) -> RefinementRun:
    membership = curation_membership_for(request.user)
    return get_or_404_audited(RefinementRun.objects.all(), object_id=pk, anywhere={"pk": pk}, pk=pk,
                              organisation=membership.organisation)


@require_GET
@login_required
def run_list(request):
    membership = curation_membership_for(request.user)
    runs = RefinementRun.objects.filter(organisation=membership.organisation).select_related("created_by")[:50]
    defaults = default_config("cpu")
    form = RefinementRunForm(initial={"steps": defaults.steps, "max_examples": defaults.max_examples,
                                      "num_generations": defaults.num_generations})
    return render(request, "prompting/refinement_list.html", {"runs": runs, "form": form, "defaults": defaults})


@require_POST
@login_required
def run_start(request):
    membership = curation_membership_for(request.user)
    form = RefinementRunForm(request.POST)
    if not form.is_valid():
        runs = RefinementRun.objects.filter(organisation=membership.organisation)[:50]
        return render(request, "prompting/refinement_list.html", {"runs": runs, "form": form, "defaults": default_config("cpu")},
                      status=400)
    data = form.cleaned_data
    try:
        run = refinement_run_create(organisation=membership.organisation, user=request.user, steps=data["steps"],
                                    max_examples=data["max_examples"], num_generations=data["num_generations"],
                                    endpoint_name=data["endpoint"].name if data["endpoint"] else "")
    except RefinementError as exc:
        messages.error(request, str(exc))
        return redirect("refinement:list")
    refinement_run_queue(run=run)
    return redirect("refinement:detail", pk=run.pk)


def _context(run: RefinementRun) -> dict:
    curve = [(point["step"], point["reward_mean"]) for point in run.curve]
    patients = Patient.objects.filter(organisation=run.organisation).in_bulk([row.get("patient") for row in run.validation])
    rows = [dict(row, patient_obj=patients.get(row.get("patient"))) for row in run.validation]
    samples = [dict(row, diff=diff_html(row["initial_prompt"], row["refined_prompt"])) for row in rows if row.get("initial_prompt")]
    return {
        "run": run, "running": run.status in ("queued", "running"),
        "chart": line_chart([("mean reward", curve)], title=f"Reward per step, run {run.version}", x_label="step",
                            y_label="mean reward") if len(curve) >= 1 else "",
        "rows": rows, "samples": samples,
    }


@require_GET
@login_required
def run_detail(request, pk: int):
    run = _run_for(request, pk)
    template = "prompting/_refinement_status.html" if request.htmx else "prompting/refinement_detail.html"
    context = _context(run)
    shown = [row["patient_obj"].pk for row in context["rows"] if row["patient_obj"]] if not request.htmx else []
    if shown:  # the validation table names held-out patients: which ones were shown is audited
        audit_record(AuditAction.VIEW_PATIENT_LIST, obj=run, details={"patients": shown})
    return fragment(request, template, context)


@require_POST
@login_required
def run_cancel(request, pk: int):
    run = refinement_run_cancel(run=_run_for(request, pk))
    messages.info(request, run.message)
    return redirect("refinement:detail", pk=run.pk)


@require_POST
@login_required
def run_promote(request, pk: int):
    run = _run_for(request, pk)
    try:
        refinement_run_promote(run=run, user=request.user)
        messages.success(request, f"Run {run.version} is promoted: guidance requests now refine their prompts with it.")
    except RefinementError as exc:
        messages.error(request, str(exc))
    return redirect("refinement:detail", pk=run.pk)


@require_POST
@login_required
def run_demote(request, pk: int):
    run = refinement_run_demote(run=_run_for(request, pk))
    messages.info(request, f"Run {run.version} is no longer used: guidance requests send the initial prompt.")
    return redirect("refinement:detail", pk=run.pk)

