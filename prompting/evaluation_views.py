"""Evaluation pages: start an evaluation (curators), watch it, read its table and plots, export it (clinic members)."""

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from audit.models import AuditAction
from audit.services import audit_record
from patients import models as pm
from patients.selectors import CURATION_ROLES, curation_membership_for, get_or_404_audited, page_membership_for
from pmlm_site.charts import interval_chart
from prompting.evaluation_runs import (
    EvaluationError,
    evaluation_csv,
    evaluation_run_as_json,
    evaluation_run_cancel,
    evaluation_run_create,
    evaluation_run_queue,
    refinement_run_for_evaluation,
)
from prompting.forms import EvaluationRunForm
from prompting.models import EvaluationRun
from prompting.pmlm.evaluation import METRICS, VARIANT_LABELS, VARIANTS
from prompting.views import fragment

RAGS = {"both": (True, False), "on": (True,), "off": (False,)}
TABLE_METRICS = (
    "closeness",
    "similarity",
    "rouge_l",
    "key_item_coverage",
    "key_item_precision",
    "flag_mention_rate",
    "safety_warning_rate",
    "unsupported_claims",
    "words",
    "judge",
)


def _run_for(request, pk: int) -> tuple[EvaluationRun, object]:
    """The evaluation, of the caller's organisation only, and the caller's membership."""
    membership = page_membership_for(request.user)
    run = get_or_404_audited(
        EvaluationRun.objects.all(), object_id=pk, anywhere={"pk": pk}, pk=pk, organisation=membership.organisation
    )
    return run, membership


def _list_context(membership, form) -> dict:
    runs = EvaluationRun.objects.filter(organisation=membership.organisation).select_related("created_by")[:50]
    return {"runs": runs, "form": form, "curator": membership.role in CURATION_ROLES, "variant_labels": VARIANT_LABELS}


@require_GET
@login_required
def evaluation_list(request):
    membership = page_membership_for(request.user)
    return render(request, "prompting/evaluation_list.html", _list_context(membership, _start_form(membership)))


def _start_form(membership, data=None) -> EvaluationRunForm:
    """The form to start an evaluation, knowing whether her organisation has a run the refined variants can apply."""
    refined_ready = refinement_run_for_evaluation(membership.organisation) is not None
    return EvaluationRunForm(data, refined_ready=refined_ready)


@require_POST
@login_required
def evaluation_start(request):
    membership = curation_membership_for(request.user)
    form = _start_form(membership, request.POST)
    if not form.is_valid():
        return render(request, "prompting/evaluation_list.html", _list_context(membership, form), status=400)
    data = form.cleaned_data
    try:
        run = evaluation_run_create(
            organisation=membership.organisation,
            user=request.user,
            endpoint_names=[e.name for e in data["endpoints"]] or None,
            retrieval=RAGS[data["retrieval"]],
            variants=tuple(data["variants"]),
            limit_patients=data["limit_patients"],
            judge_endpoint_name=data["judge"].name if data["judge"] else "",
        )
    except EvaluationError as exc:
        messages.error(request, str(exc))
        return redirect("evaluations:list")
    evaluation_run_queue(run=run)
    return redirect("evaluations:detail", pk=run.pk)


def _figure(row: dict, metric: str) -> dict:
    value, ci = row.get(metric), (row.get("ci") or {}).get(metric)
    return {
        "metric": metric,
        "value": value,
        "low": ci[0] if ci else None,
        "high": ci[1] if ci else None,
        "whole": metric == "words",
    }


def _context(run: EvaluationRun, membership) -> dict:
    shown = [m for m in TABLE_METRICS if any(row.get(m) is not None for row in run.rows)]
    rows = [
        {
            **row,
            "label": VARIANT_LABELS.get(row["variant"], row["variant"]),
            "figures": [_figure(row, m) for m in shown],
            "delta": _figure(row, "closeness_vs_general"),
            "delta_pmlm": _figure(row, "closeness_vs_pmlm"),
        }
        for row in run.rows
    ]
    vs_pmlm = any(row.get("closeness_vs_pmlm") is not None for row in run.rows)
    charts = []
    for endpoint in run.config.get("endpoints", []):
        for metric, label in (
            ("closeness", "closeness to the physician (0–1)"),
            ("key_item_coverage", "key-item coverage (0–1)"),
        ):
            variants = [v for v in VARIANTS if any(r["variant"] == v and r["endpoint"] == endpoint for r in run.rows)]
            series = []
            for rag in run.config.get("retrieval", []):
                points = []
                for variant in variants:
                    row = next(
                        (r for r in run.rows if (r["endpoint"], r["rag"], r["variant"]) == (endpoint, rag, variant)),
                        None,
                    )
                    ci = row and row["ci"].get(metric)
                    points.append((row[metric], ci[0], ci[1]) if row and row.get(metric) is not None and ci else None)
                series.append(("with guidance sources" if rag else "without guidance sources", points))
            chart = interval_chart(
                variants, series, title=f"{METRICS[metric]['label']} by prompt variant, {endpoint}", y_label=label
            )
            if chart:
                charts.append(
                    {
                        "svg": chart,
                        "caption": f"{METRICS[metric]['label']}: mean and bootstrap 95% CI per variant, {endpoint}.",
                    }
                )
    return {
        "run": run,
        "running": run.is_unfinished,
        "rows": rows,
        "metrics": [{"key": m, **METRICS[m]} for m in shown],
        "charts": charts,
        "samples": _samples(run),
        "curator": membership.role in CURATION_ROLES,
        "report": run.report,
        "vs_pmlm": vs_pmlm,
        "delta_after": "closeness" if "closeness" in shown else "",
    }  # the paired differences follow closeness


SAMPLE_ENCOUNTERS = 3


def _samples(run: EvaluationRun) -> list[dict]:
    """What the physician advised at the first encounters, beside each variant's answer (first LLM, sources on if
    evaluated)."""
    if not run.is_done or not run.config.get("endpoints"):
        return []
    rag = run.config["retrieval"][0]
    items = list(
        run.items.filter(endpoint_name=run.config["endpoints"][0], use_retrieval=rag).select_related("patient")
    )
    encounters = list(dict.fromkeys(i.encounter_id for i in items))[:SAMPLE_ENCOUNTERS]
    advice = dict(
        pm.PhysicianRecommendation.objects.filter(encounter_id__in=encounters).values_list("encounter_id", "text")
    )
    samples = []
    for encounter in encounters:
        answers = sorted(
            (i for i in items if i.encounter_id == encounter),
            key=lambda i: VARIANTS.index(i.variant) if i.variant in VARIANTS else len(VARIANTS),
        )
        samples.append(
            {
                "patient": answers[0].patient,
                "encounter": encounter,
                "recommendation": advice.get(encounter, ""),
                "rag": rag,
                "endpoint": run.config["endpoints"][0],
                "answers": [{"label": VARIANT_LABELS.get(i.variant, i.variant), "item": i} for i in answers],
            }
        )
    return samples


@require_GET
@login_required
def evaluation_detail(request, pk: int):
    run, membership = _run_for(request, pk)
    template = "prompting/_evaluation_status.html" if request.htmx else "prompting/evaluation_detail.html"
    context = _context(run, membership)
    if context["samples"]:  # they name patients: which ones were shown is audited
        audit_record(
            AuditAction.VIEW_PATIENT_LIST, obj=run, details={"patients": [s["patient"].pk for s in context["samples"]]}
        )
    return fragment(request, template, context)


@require_POST
@login_required
def evaluation_cancel(request, pk: int):
    membership = curation_membership_for(request.user)
    run = evaluation_run_cancel(
        run=get_or_404_audited(
            EvaluationRun.objects.all(), object_id=pk, anywhere={"pk": pk}, pk=pk, organisation=membership.organisation
        )
    )
    messages.info(request, run.message)
    return redirect("evaluations:detail", pk=run.pk)


@require_GET
@login_required
def evaluation_export(request, pk: int, fmt: str):
    run, _ = _run_for(request, pk)
    if fmt == "csv":
        response = HttpResponse(evaluation_csv(run), content_type="text/csv; charset=utf-8")
    else:
        response = HttpResponse(json.dumps(evaluation_run_as_json(run), indent=2), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="evaluation-{run.pk}.{fmt}"'
    return response
