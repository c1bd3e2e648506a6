"""Refinement run pages for curators: start a run, watch it, read its curve, its validation and what
the policy learned, promote it."""

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
from prompting.pmlm.edits import BY_CODE, MENU, MENU_VERSION
from prompting.pmlm.training import default_config
from prompting.refinement import (
    RefinementError,
    refinement_run_cancel,
    refinement_run_create,
    refinement_run_demote,
    refinement_run_promote,
    refinement_run_queue,
    set_aside_reasons,
)
from prompting.views import fragment


def _run_for(request, pk: int) -> RefinementRun:
    membership = curation_membership_for(request.user)
    return get_or_404_audited(
        RefinementRun.objects.all(), object_id=pk, anywhere={"pk": pk}, pk=pk, organisation=membership.organisation
    )


@require_GET
@login_required
def run_list(request):
    membership = curation_membership_for(request.user)
    runs = RefinementRun.objects.filter(organisation=membership.organisation).select_related("created_by")[:50]
    defaults = default_config("cpu")
    form = RefinementRunForm(
        initial={
            "steps": defaults.steps,
            "max_examples": defaults.max_examples,
            "num_generations": defaults.num_generations,
        }
    )
    return render(request, "prompting/refinement_list.html", _list_context(runs, form, defaults))


def _list_context(runs, form, defaults) -> dict:
    return {
        "runs": runs,
        "form": form,
        "defaults": defaults,
        "menu": MENU,
        "menu_version": MENU_VERSION,
        "answers_per_example": 2 * len(MENU),
    }  # every edit, with and without guidance sources


@require_POST
@login_required
def run_start(request):
    membership = curation_membership_for(request.user)
    form = RefinementRunForm(request.POST)
    if not form.is_valid():
        runs = RefinementRun.objects.filter(organisation=membership.organisation)[:50]
        return render(
            request, "prompting/refinement_list.html", _list_context(runs, form, default_config("cpu")), status=400
        )
    data = form.cleaned_data
    try:
        run = refinement_run_create(
            organisation=membership.organisation,
            user=request.user,
            steps=data["steps"],
            max_examples=data["max_examples"],
            num_generations=data["num_generations"],
            endpoint_name=data["endpoint"].name if data["endpoint"] else "",
        )
    except RefinementError as exc:
        messages.error(request, str(exc))
        return redirect("refinement:list")
    refinement_run_queue(run=run)
    return redirect("refinement:detail", pk=run.pk)


def edit_label(code: str) -> str:
    """An edit's words for curators; a code this version's menu lacks is shown as it is."""
    edit = BY_CODE.get(code or "")
    return edit.label if edit else (code or "")


def _interval(difference, ci) -> dict:
    """A paired difference as the figure template takes it, and what it means in words."""
    low, high = (ci[0], ci[1]) if ci else (None, None)
    if difference is None or not ci:
        verdict = ""
    elif low is not None and low > 0:
        verdict = "higher: the 95% interval lies above zero"
    elif high is not None and high < 0:
        verdict = "lower: the 95% interval lies below zero"
    else:
        verdict = "no clear difference: the 95% interval includes zero"
    text = "" if difference is None else f"{difference:+.3f}" + (f" (95% CI {low:+.3f} to {high:+.3f})" if ci else "")
    return {"value": difference, "low": low, "high": high, "verdict": verdict, "text": text.replace("-", "−")}


def _validation_blocks(validation: dict) -> list[dict]:
    """The held-out summary, overall and per guidance-sources setting, ready for the table."""
    blocks = [("All held-out answers", validation)]
    blocks += [
        (f"Guidance sources {setting}", block)
        for setting, block in (validation.get("by_sources") or {}).items()
        if block
    ]
    out = []
    for label, block in blocks:
        if not block.get("n"):
            continue
        vs_fixed, fixed_vs_initial = block.get("vs_best_fixed") or {}, block.get("best_fixed_vs_initial") or {}
        out.append(
            {
                "label": label,
                "n": block.get("n"),
                "patients": block.get("patients"),
                "reward_initial": block.get("reward_initial"),
                "reward_refined": block.get("reward_refined"),
                "reward_best_fixed": block.get("reward_best_fixed"),
                "precision": block.get("key_item_precision") or {},
                "claims": block.get("unsupported_claims") or {},
                "vs_initial": _interval(block.get("difference"), block.get("ci")),
                "vs_best_fixed": _interval(vs_fixed.get("difference"), vs_fixed.get("ci")),
                "best_fixed_vs_initial": _interval(fixed_vs_initial.get("difference"), fixed_vs_initial.get("ci")),
            }
        )
    return out


def _learned(learned: dict, best_fixed: str, precision: dict | None = None) -> dict | None:
    """What the policy learned, in curators' words: each edit's use, gain and key-item precision on the
    training patients, and its picks per kind of patient."""
    if not learned or not learned.get("edits"):
        return None
    precision = precision or {}
    edits = [
        {
            **edit,
            "label": edit.get("label") or edit_label(edit.get("code")),
            "best_fixed": edit.get("code") == best_fixed,
            "gain": {"value": edit.get("mean_gain"), "low": None, "high": None},
            "precision": precision.get(edit.get("code")),
        }
        for edit in learned["edits"]
    ]
    most = max(edits, key=lambda edit: edit.get("chosen") or 0)
    kinds = []
    for kind in learned.get("kinds") or []:
        picks = [
            {**pick, "label": pick.get("label") or edit_label(pick.get("code"))} for pick in kind.get("edits") or []
        ]
        if picks:
            kinds.append(
                {
                    "kind": kind.get("kind", ""),
                    "examples": kind.get("examples", 0),
                    "top": picks[0],
                    "others": picks[1:],
                }
            )
    return {
        "menu": learned.get("menu", ""),
        "edits": edits,
        "kinds": kinds,
        "has_precision": bool(precision),
        "most_chosen": most if most.get("chosen") else None,
        "total": sum(edit.get("chosen") or 0 for edit in edits),
    }


def _set_aside(aside: dict | None, initial_precision: float | None) -> dict | None:
    return {**aside, "why": set_aside_reasons(aside, initial_precision)} if aside else None


def _settings(report: dict) -> list[dict]:
    """What a run deploys per guidance-sources setting, and why: its best fixed edit under the guardrail there,
    the edit set aside, and the policy's figures on that setting's training examples."""
    out = []
    for setting, block in (report.get("by_sources") or {}).items():
        fixed = block.get("best_fixed") or {}
        aside = fixed.get("set_aside")
        out.append(
            {
                "label": f"Guidance sources {setting}",
                "fixed": {**fixed, "label": fixed.get("label") or edit_label(fixed.get("code"))},
                "set_aside": _set_aside(aside, fixed.get("initial_key_item_precision")),
                "deployed": block.get("deployed", "policy"),
                "policy_reward": block.get("policy_train_mean_reward"),
                "policy_precision": block.get("policy_train_key_item_precision"),
                "policy_claims": block.get("policy_train_unsupported_claims"),
                "claims_rose": (fixed.get("unsupported_claims") or 0) > (fixed.get("initial_unsupported_claims") or 0),
            }
        )
    return out


def _context(run: RefinementRun) -> dict:
    curve = [(point["step"], point["reward_mean"]) for point in run.curve]
    patients = Patient.objects.filter(organisation=run.organisation).in_bulk(
        [row.get("patient") for row in run.validation]
    )
    rows = [
        dict(
            row,
            patient_obj=patients.get(row.get("patient")),
            edit_label=edit_label(row.get("code")),
            best_fixed_label=edit_label(row.get("best_fixed")),
        )
        for row in run.validation
    ]
    samples = [
        dict(row, diff=diff_html(row["initial_prompt"], row["refined_prompt"]))
        for row in rows
        if row.get("initial_prompt")
    ]
    report = run.report or {}
    best_fixed = report.get("best_fixed") or {}
    validation = report.get("validation") or {}
    return {
        "run": run,
        "running": run.is_unfinished,
        "chart": line_chart(
            [("mean reward", curve)], title=f"Reward per step, run {run.version}", x_label="step", y_label="mean reward"
        )
        if len(curve) >= 1
        else "",
        "rows": rows,
        "samples": samples,
        "report": report,
        "best_fixed": {**best_fixed, "label": best_fixed.get("label") or edit_label(best_fixed.get("code"))}
        if best_fixed
        else None,
        "validation": validation,
        "blocks": _validation_blocks(validation) if validation else [],
        "validation_difference": _interval(validation.get("difference"), validation.get("ci")),
        "learned": _learned(report.get("learned") or {}, best_fixed.get("code", ""), report.get("edit_precision")),
        "set_aside": _set_aside(report.get("set_aside"), best_fixed.get("initial_key_item_precision")),
        "settings": _settings(report),
        "edit_runs": any(row.get("code") for row in run.validation) or bool(report),
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
    response = fragment(request, template, context)
    if request.htmx and not context["running"]:
        # The poll that sees the run finish reloads the page: its validation and what it learned are outside the
        # fragment.
        response["HX-Refresh"] = "true"
    return response


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
