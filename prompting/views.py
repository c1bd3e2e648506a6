"""The consultation workspace: prompt and guidance side by side, ratings, blinded A/B comparisons.

Every view is scoped to the clinician's organisation and returns an HTMX fragment (with
`Vary: HX-Request`) except the A/B summary page.
"""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET, require_POST

from audit.models import AuditAction
from audit.services import audit_record
from patients import selectors as patient_selectors
from patients.models import ImportJob
from pmlm_site.textdiff import diff_html
from prompting.forms import ABForm, GuidanceForm, PromptForm, RatingForm
from prompting.guidance import GuidanceError, guidance_prefill_while_typing, guidance_request_create
from prompting.models import (
    RATING_SCALES,
    ABComparison,
    ABJudgement,
    ClinicianRating,
    ComparisonRun,
    EvaluationRun,
    GuidanceRequest,
    LLMEndpoint,
    PeerModel,
    RefinementRun,
)
from prompting.pmlm.safety import NOTICE
from prompting.prompts import PromptError, prompt_request
from prompting.ratings import RatingError, ab_comparison_create, ab_judge, ab_summary, guidance_rate
from prompting.refinement import promoted_run

# Words a question being typed needs before its guidance sources are read ahead: fewer retrieve little of what the
# finished question will.
PREFILL_MIN_WORDS = 3
SCALE_LABELS = {
    "accuracy": "Accuracy",
    "completeness": "Completeness",
    "personalisation": "Personalisation",
    "safety": "Safety",
    "clarity": "Clarity",
}


def fragment(request, template: str, context: dict, status: int = 200):
    """A page or HTMX fragment that caches apart for HTMX and full requests."""
    response = render(request, template, context, status=status)
    patch_vary_headers(response, ["HX-Request"])
    return response


def _patient_for(request, pk: int):
    membership = patient_selectors.page_membership_for(request.user)
    return patient_selectors.patient_get(organisation=membership.organisation, pk=pk)


def _guidance_for(patient, guidance_id: int) -> GuidanceRequest:
    return patient_selectors.get_or_404_audited(
        GuidanceRequest.objects.select_related("endpoint", "prompt", "refined_prompt"),
        object_id=guidance_id,
        anywhere={"pk": guidance_id},
        pk=guidance_id,
        patient=patient,
    )


def _form_errors(form) -> str:
    return "; ".join(
        f"{form.fields[name].label or name}: {' '.join(errors)}" if name in form.fields else " ".join(errors)
        for name, errors in form.errors.items()
    )


def guidance_context(request, patient, guidance, *, blind: bool = False, label: str = "", **extra) -> dict:
    rating = ClinicianRating.objects.filter(guidance=guidance, rater=request.user).first() if guidance else None
    return {
        "patient": patient,
        "guidance": guidance,
        "notice": NOTICE,
        "blind": blind,
        "label": label,
        "rating": rating,
        "rating_scales": [(s, SCALE_LABELS[s], getattr(rating, s) if rating else None) for s in RATING_SCALES],
        "endpoints": LLMEndpoint.objects.filter(active=True),
        **extra,
    }


def prompt_panel_context(patient, guidance) -> dict:
    prompt, refined = guidance.prompt, guidance.refined_prompt
    finished = guidance.is_finished
    refinement_expected = guidance.use_refinement and promoted_run(patient.organisation_id) is not None
    pending = not finished and (prompt is None or (refinement_expected and not guidance.refinement))
    return {
        "patient": patient,
        "guidance": guidance,
        "prompt": prompt,
        "refined": refined,
        "sent": guidance.prompt_sent,
        "pending": pending,
        "diff": diff_html(prompt.text, refined.text) if prompt and refined else "",
    }


@require_POST
@login_required
def prompt_panel(request, pk: int):
    """Build the personalised prompt for a typed question and show it with its provenance (HTMX)."""
    patient = _patient_for(request, pk)
    form = PromptForm(request.POST)
    context = {"patient": patient, "form": form}
    if form.is_valid():
        try:
            context["prompt"] = prompt_request(
                patient=patient, question=form.cleaned_data["question"], at=form.cleaned_data["at"], user=request.user
            )
        except PromptError as exc:
            context["error"] = str(exc)
    else:
        context["error"] = _form_errors(form)
    return fragment(request, "prompting/_prompt.html", context)


@require_POST
@login_required
def guidance_create(request, pk: int):
    """Queue a guidance request; the workspace then shows its prompt and its answer side by side."""
    patient = _patient_for(request, pk)
    form = GuidanceForm(request.POST)
    if not form.is_valid():
        return fragment(
            request, "prompting/_guidance.html", guidance_context(request, patient, None, error=_form_errors(form))
        )
    try:
        guidance = guidance_request_create(
            patient=patient,
            question=form.cleaned_data["question"],
            at=form.cleaned_data["at"],
            endpoint=form.cleaned_data["endpoint"],
            use_retrieval=form.cleaned_data["use_retrieval"],
            user=request.user,
        )
    except (GuidanceError, PromptError) as exc:
        return fragment(request, "prompting/_guidance.html", guidance_context(request, patient, None, error=str(exc)))
    return fragment(
        request,
        "prompting/_workspace.html",
        {**guidance_context(request, patient, guidance), **prompt_panel_context(patient, guidance)},
    )


@require_POST
@login_required
def guidance_prefill_view(request, pk: int):
    """A question is being typed (the workspace posts its form when she pauses): the local model reads her prompt
    up to the question's words before she asks. 202 when a prefill was queued; 204 when there is nothing to read
    ahead (no guidance sources asked for, another kind of LLM, a question too short to retrieve for)."""
    patient = _patient_for(request, pk)
    form = GuidanceForm(request.POST)
    if not form.is_valid():
        return HttpResponse(status=400)
    question = form.cleaned_data["question"]
    if not form.cleaned_data["use_retrieval"] or len(question.split()) < PREFILL_MIN_WORDS:
        return HttpResponse(status=204)
    try:
        queued = guidance_prefill_while_typing(
            patient=patient, question=question, at=form.cleaned_data["at"], endpoint=form.cleaned_data["endpoint"]
        )
    except PromptError:  # a consultation date out of range: asking says so
        return HttpResponse(status=204)
    return HttpResponse(status=202 if queued else 204)


@require_GET
@login_required
def guidance_detail(request, pk: int, guidance_id: int):
    patient = _patient_for(request, pk)
    guidance = _guidance_for(patient, guidance_id)
    if guidance.is_done or guidance.is_failed:  # while it is written the panel polls: the finished answer is the read
        audit_record(AuditAction.VIEW_GUIDANCE, obj=guidance, organisation_id=patient.organisation_id)
    return fragment(request, "prompting/_guidance.html", guidance_context(request, patient, guidance))


@require_GET
@login_required
def guidance_prompt(request, pk: int, guidance_id: int):
    patient = _patient_for(request, pk)
    return fragment(
        request, "prompting/_prompt_panel.html", prompt_panel_context(patient, _guidance_for(patient, guidance_id))
    )


@require_POST
@login_required
def guidance_rate_view(request, pk: int, guidance_id: int):
    patient = _patient_for(request, pk)
    guidance = _guidance_for(patient, guidance_id)
    form = RatingForm(request.POST)
    extra = {}
    if not form.is_valid():
        extra["rating_error"] = "Choose 1 to 5 on every scale."
    else:
        data = form.cleaned_data
        try:
            guidance_rate(
                guidance=guidance,
                rater=request.user,
                scores={s: data[s] for s in RATING_SCALES},
                would_follow=data["would_follow"],
                comment=data["comment"],
            )
            extra["rating_saved"] = True
        except RatingError as exc:
            extra["rating_error"] = str(exc)
    context = guidance_context(request, patient, guidance, **extra)
    return fragment(request, "prompting/_rating.html", context, status=200 if "rating_saved" in extra else 400)


# --- blinded A/B -----------------------------------------------------------------------------------


def _ab_context(request, comparison: ABComparison) -> dict:
    judgement = ABJudgement.objects.filter(comparison=comparison, rater=request.user).first()
    revealed = judgement is not None
    return {
        "comparison": comparison,
        "patient": comparison.patient,
        "judgement": judgement,
        "revealed": revealed,
        "sides": [
            guidance_context(request, comparison.patient, g, blind=not revealed, label=label)
            for label, g in (("A", comparison.guidance_a), ("B", comparison.guidance_b))
        ],
        "both_done": comparison.guidance_a.is_done and comparison.guidance_b.is_done,
        "choices": ABJudgement.Choice.choices,
    }


@require_POST
@login_required
def ab_create(request, pk: int):
    patient = _patient_for(request, pk)
    form = ABForm(request.POST, patient=patient)
    if not form.is_valid():
        return fragment(
            request, "prompting/_guidance.html", guidance_context(request, patient, None, error=_form_errors(form))
        )
    try:
        comparison = ab_comparison_create(
            patient=patient,
            question=form.cleaned_data["question"],
            kind=form.cleaned_data["kind"],
            at=form.cleaned_data["at"],
            user=request.user,
        )
    except (RatingError, GuidanceError, PromptError) as exc:
        return fragment(request, "prompting/_guidance.html", guidance_context(request, patient, None, error=str(exc)))
    return fragment(request, "prompting/_ab.html", _ab_context(request, comparison))


def _comparison_for(patient, comparison_id: int) -> ABComparison:
    return patient_selectors.get_or_404_audited(
        ABComparison.objects.select_related("guidance_a", "guidance_b", "patient"),
        object_id=comparison_id,
        anywhere={"pk": comparison_id},
        pk=comparison_id,
        patient=patient,
    )


@require_GET
@login_required
def ab_detail(request, pk: int, comparison_id: int):
    comparison = _comparison_for(_patient_for(request, pk), comparison_id)
    return fragment(request, "prompting/_ab.html", _ab_context(request, comparison))


@require_POST
@login_required
def ab_pick(request, pk: int, comparison_id: int):
    comparison = _comparison_for(_patient_for(request, pk), comparison_id)
    context = _ab_context(request, comparison)
    try:
        ab_judge(
            comparison=comparison,
            rater=request.user,
            choice=request.POST.get("choice", ""),
            comment=request.POST.get("comment", "").replace("\x00", ""),
        )
    except RatingError as exc:
        return fragment(request, "prompting/_ab.html", {**context, "pick_error": str(exc)}, status=400)
    return fragment(request, "prompting/_ab.html", _ab_context(request, comparison))


@require_GET
@login_required
def ab_summary_page(request):
    membership = patient_selectors.page_membership_for(request.user)
    return render(request, "prompting/ab_summary.html", {"rows": ab_summary(organisation=membership.organisation)})


# --- long jobs ---------------------------------------------------------------------------------------


def _jobs(organisation, *, curator: bool) -> list[dict]:
    """Every long job of the organisation, newest first: what it is, its status, progress and reason."""
    rows = []
    for model, name in (
        (PeerModel, "Peer model training"),
        (RefinementRun, "Prompt refinement (RL)"),
        (EvaluationRun, "Evaluation"),
        (ComparisonRun, "LLM comparison"),
        (ImportJob, "FHIR import"),
    ):
        for job in model.objects.filter(organisation=organisation).order_by("-created_at")[:10]:
            link = ""
            if model is RefinementRun and curator:
                link = reverse("refinement:detail", args=[job.pk])
            elif model is EvaluationRun:
                link = reverse("evaluations:detail", args=[job.pk])
            rows.append({"name": name, "job": job, "link": link})
    rows.sort(key=lambda r: r["job"].created_at, reverse=True)
    return rows


@require_GET
@login_required
def jobs_page(request):
    membership = patient_selectors.page_membership_for(request.user)
    rows = _jobs(membership.organisation, curator=membership.role in patient_selectors.CURATION_ROLES)
    context = {"rows": rows, "running": any(r["job"].is_unfinished for r in rows)}
    template = "prompting/_jobs.html" if request.htmx else "prompting/jobs.html"
    return fragment(request, template, context)
