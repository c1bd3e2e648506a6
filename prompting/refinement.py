"""Prompt refinement by reinforcement learning: runs, their checkpoints, and the promoted policy.

Every surface (run pages, admin actions, `refine_prompts`, the Celery task, guidance requests)
calls these functions. The method itself (rewards, guard, GRPO training) is in `prompting.pmlm`.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import statistics
from collections import defaultdict
from dataclasses import asdict, fields
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from patients import models as pm
from prompting.guidance import GuidanceError, endpoint_default, endpoint_named, guidance_messages, question_prompt
from prompting.jobs import job_cancel, job_claimed, job_fail
from prompting.llm import LLMError, build_backend
from prompting.llm.cache import CachedGenerator
from prompting.models import ClinicianRating, PersonalizedPrompt, RefinementRun
from prompting.pmlm.policy import BASE_POLICY_NAME, build_base_checkpoint, is_checkpoint
from prompting.pmlm.refine import check_refined, clean_instructions, policy_messages, refined_sections, refined_text
from prompting.pmlm.retrieval import default_embedder
from prompting.pmlm.rewards import Reference, RewardWeights
from prompting.pmlm.training import (
    Example, RefinementConfig, Scorer, Stopped, default_config, split_by_patient, train_policy,
)
from prompting.selectors import patient_identifiers
from prompting.services import PromptError, count_tokens

# The question a physician answered at an antenatal encounter, asked of every training example.
ENCOUNTER_QUESTION = "What do you recommend for her at this antenatal visit?"
ENDORSED, REJECTED = 4.0, 2.0  # mean clinician rating at or above / at or below
EXAMPLES_PER_PATIENT = 2
VALIDATION_SAMPLES_WITH_TEXT = 8


class RefinementError(ValueError):
    """A run that cannot start or go on, with a message for the curator."""


def refiner_base_checkpoint() -> Path:
    """The policy every run starts from: the configured checkpoint, or SmolLM2 converted once from its GGUF."""
    configured = settings.PMLM_REFINER_BASE_CHECKPOINT
    if configured:
        path = Path(configured)
        if not is_checkpoint(path):
            raise RefinementError(f"PMLM_REFINER_BASE_CHECKPOINT={configured} is not a transformers checkpoint.")
        return path
    return build_base_checkpoint(settings.VAR_DIR / "models" / BASE_POLICY_NAME)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _policy_answer(checkpoint: Path, initial_prompt: str, *, max_tokens: int, device: str = "") -> tuple[str, bool]:
    """The policy's greedy rewrite and whether the token limit cut it off: the one path validation
    and guidance requests share."""
    backend = build_backend("transformers", {"checkpoint": str(checkpoint), "device": device})
    result = backend.generate(policy_messages(initial_prompt), max_tokens=max_tokens, temperature=0)
    return result.text, result.usage.get("completion_tokens", 0) >= max_tokens


# --- creating, cancelling, promoting ---------------------------------------------------------------


def refinement_run_create(*, organisation: pm.Organisation, user=None, steps: int | None = None, max_examples: int | None = None,
                          num_generations: int | None = None, endpoint_name: str = "", device: str = "") -> RefinementRun:
    for name, value in (("steps", steps), ("max_examples", max_examples), ("num_generations", num_generations)):
        if value is not None and (not isinstance(value, int) or value < 1 or value > 10_000):
            raise RefinementError(f"{name} must be a whole number from 1 to 10000, got {value!r}.")
    if num_generations is not None and num_generations < 2:
        raise RefinementError("A group needs at least 2 generations to compare.")
    try:
        endpoint = endpoint_named(endpoint_name) if endpoint_name else endpoint_default()
    except GuidanceError as exc:
        raise RefinementError(str(exc)) from None
    config = default_config(device or _device(), steps=steps, max_examples=max_examples, num_generations=num_generations)
    with transaction.atomic():
        last = RefinementRun.objects.select_for_update().filter(organisation=organisation).order_by("-version").first()
        return RefinementRun.objects.create(
            organisation=organisation, version=(last.version + 1) if last else 1, created_by=user,
            config={**config.as_dict(), "target_endpoint": endpoint.name, "use_retrieval": True,
                    "question": ENCOUNTER_QUESTION, "weights": RewardWeights().as_dict()},
            message="Queued: waiting for a worker")


def refinement_run_queue(*, run: RefinementRun):
    from prompting.tasks import run_refinement_task

    transaction.on_commit(lambda: run_refinement_task.delay(run.pk))


def refinement_run_cancel(*, run: RefinementRun) -> RefinementRun:
    """A queued run stops at once; a running one stops after its current step."""
    return job_cancel(RefinementRun, run.pk, while_running="Cancelling after the current step…")


def refinement_run_promote(*, run: RefinementRun, user=None) -> RefinementRun:
    """Guidance requests of the run's organisation refine their prompts with this policy from now on."""
    if run.status != pm.JobStatus.DONE or not run.checkpoint:
        raise RefinementError("Only a finished run with a checkpoint can be promoted.")
    if not is_checkpoint(settings.VAR_DIR / run.checkpoint):
        raise RefinementError(f"The checkpoint of run {run.version} is missing from {run.checkpoint}.")
    with transaction.atomic():
        RefinementRun.objects.select_for_update().filter(organisation=run.organisation, promoted=True).update(promoted=False)
        RefinementRun.objects.filter(pk=run.pk).update(promoted=True, promoted_by=user, promoted_at=timezone.now())
    run.refresh_from_db()
    return run


def refinement_run_demote(*, run: RefinementRun) -> RefinementRun:
    RefinementRun.objects.filter(pk=run.pk).update(promoted=False)
    run.refresh_from_db()
    return run


def promoted_run(organisation_id: int) -> RefinementRun | None:
    return RefinementRun.objects.filter(organisation_id=organisation_id, promoted=True).first()


# --- training examples --------------------------------------------------------------------------------


def clinician_references(patient: pm.Patient) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Guidance clinicians rated well (mean ≥ 4) and poorly (mean ≤ 2) for her."""
    by_guidance: dict[int, list[float]] = defaultdict(list)
    texts = {}
    for rating in ClinicianRating.objects.filter(guidance__patient=patient, guidance__status=pm.JobStatus.DONE).select_related("guidance"):
        by_guidance[rating.guidance_id].append(rating.mean)
        texts[rating.guidance_id] = rating.guidance.text
    endorsed = tuple(texts[g] for g, means in by_guidance.items() if statistics.fmean(means) >= ENDORSED and texts[g].strip())
    rejected = tuple(texts[g] for g, means in by_guidance.items() if statistics.fmean(means) <= REJECTED and texts[g].strip())
    return endorsed, rejected


def training_examples(*, organisation: pm.Organisation, max_examples: int, seed: int, use_retrieval: bool = True,
                      question: str = ENCOUNTER_QUESTION, on_progress=None) -> list[Example]:
    """(patient, encounter, question) examples: the prompt as the physician's day left it, and what she advised.

    Patients are drawn in a seeded order with at most two encounters each, so a small run still
    sees many patients; each prompt is built as of the encounter's date."""
    recommendations = list(pm.PhysicianRecommendation.objects.filter(patient__organisation=organisation)
                           .select_related("encounter", "patient").order_by("pk"))
    by_patient: dict[int, list] = defaultdict(list)
    for rec in recommendations:
        by_patient[rec.patient_id].append(rec)
    rng = random.Random(seed)
    patient_ids = sorted(by_patient)
    rng.shuffle(patient_ids)
    chosen = []
    for pid in patient_ids:
        recs = by_patient[pid]
        chosen += rng.sample(recs, min(EXAMPLES_PER_PATIENT, len(recs)))
        if len(chosen) >= max_examples:
            break
    chosen = chosen[:max_examples]
    examples = []
    references: dict[int, tuple] = {}
    for n, rec in enumerate(chosen, 1):
        if on_progress:
            on_progress(n, len(chosen))
        at = (rec.encounter.period_start or rec.written_at).date()
        prompt, *_ = question_prompt(patient=rec.patient, question=question, at=at, use_retrieval=use_retrieval)
        if rec.patient_id not in references:
            references[rec.patient_id] = clinician_references(rec.patient)
        endorsed, rejected = references[rec.patient_id]
        examples.append(Example(
            key=f"visit of {at:%-d %b %Y} (encounter {rec.encounter_id})", patient=rec.patient_id, initial_text=prompt.text, sections=prompt.sections,
            risk_flag_labels=[f["label"] for f in prompt.risk_flags],
            reference=Reference(rec.text, endorsed, rejected), token_budget=prompt.template.token_budget,
            identifiers=patient_identifiers(rec.patient)))
    return examples


def endpoint_generator(endpoint_name: str, max_tokens: int) -> CachedGenerator:
    """An endpoint answering greedily, cached by the hash of its messages: the same question is asked once."""
    endpoint = endpoint_named(endpoint_name)
    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    return CachedGenerator(backend, settings.VAR_DIR / "cache" / "target-llm" / endpoint.name, max_tokens=max_tokens,
                           temperature=0.0, model_key=f"{endpoint.kind}:{sorted(endpoint.settings.items())}")


def target_answerer(endpoint_name: str, max_tokens: int):
    """The target LLM, greedy and cached by prompt hash, answering a prompt as a guidance request would."""
    cache = endpoint_generator(endpoint_name, max_tokens)
    return lambda prompt_text: cache.generate(guidance_messages(prompt_text))


# --- running -------------------------------------------------------------------------------------------


def _config(run: RefinementRun) -> RefinementConfig:
    names = {f.name for f in fields(RefinementConfig)}
    return RefinementConfig(**{k: v for k, v in run.config.items() if k in names})


def _claim(run_id: int) -> RefinementRun | None:
    with transaction.atomic():
        run = RefinementRun.objects.select_for_update().get(pk=run_id)
        if run.status in pm.JobStatus.finished():
            return None
        # A run redelivered after its worker died starts again from the base policy.
        run.status, run.started_at, run.step, run.curve, run.error = pm.JobStatus.RUNNING, timezone.now(), 0, [], ""
        run.progress, run.message = 0, "Starting"
        run.save(update_fields=["status", "started_at", "step", "curve", "error", "progress", "message"])
        return run


def refinement_run_execute(*, run_id: int, on_progress=None) -> RefinementRun:
    run = _claim(run_id)
    if run is None:
        return RefinementRun.objects.get(pk=run_id)
    output = settings.VAR_DIR / "models" / "refiner" / f"{run.organisation.slug}-run-{run.version}"
    ours = job_claimed(RefinementRun, run.pk, run.started_at)  # the sweep or a redelivered task's claim takes it away

    def progress(percent: int, message: str):
        ours.update(progress=min(percent, 99), message=message[:500])
        if on_progress:
            on_progress(percent, message)

    curve = []

    def on_step(record):
        curve.append(asdict(record))
        ours.update(step=record.step, curve=curve)

    def should_stop() -> bool:
        return not ours.filter(cancel_requested=False).exists()  # cancelled, or no longer ours

    try:
        config = _config(run)
        progress(1, "Preparing the refiner policy checkpoint")
        base = refiner_base_checkpoint()
        examples = training_examples(
            organisation=run.organisation, max_examples=config.max_examples, seed=config.seed,
            use_retrieval=run.config.get("use_retrieval", True), question=run.config.get("question", ENCOUNTER_QUESTION),
            on_progress=lambda n, total: progress(1 + int(3 * n / total), f"Building the initial prompt of example {n}/{total}"))
        if len(examples) < 2:
            raise RefinementError("Too few encounters with a physician recommendation to learn from (need 2 or more).")
        train, validation = split_by_patient(examples, share=config.validation_share, seed=config.seed)
        validation = validation[:config.max_validation]
        RefinementRun.objects.filter(pk=run.pk).update(
            train_examples=len(train), train_patients=len({e.patient for e in train}),
            trained_patients=sorted({e.patient for e in train}),
            validation_examples=len(validation), validation_patients=len({e.patient for e in validation}))
        scorer = Scorer(answer=target_answerer(run.config["target_endpoint"], config.target_max_tokens),
                        embed=default_embedder().embed, count_tokens=count_tokens,
                        weights=RewardWeights(**run.config.get("weights", {})))
        if output.exists():
            shutil.rmtree(output)
        result = train_policy(
            base_checkpoint=base, output_dir=output, train=train, validation=validation, config=config, scorer=scorer,
            policy_answer=lambda checkpoint, text: _policy_answer(checkpoint, text, max_tokens=config.max_completion_tokens,
                                                                  device=config.device),
            on_step=on_step, should_stop=should_stop, on_progress=progress)
    except Stopped:
        ours.update(status=pm.JobStatus.CANCELLED, message=f"Cancelled after step {len(curve)}", finished_at=timezone.now())
        if not RefinementRun.objects.filter(pk=run.pk, status=pm.JobStatus.RUNNING).exists():  # nobody else trains into it
            shutil.rmtree(output, ignore_errors=True)
        return RefinementRun.objects.get(pk=run.pk)
    except (RefinementError, GuidanceError, PromptError, LLMError, ValueError) as exc:
        job_fail(RefinementRun, run.pk, str(exc), started_at=run.started_at)
        return RefinementRun.objects.get(pk=run.pk)
    except Exception as exc:
        job_fail(RefinementRun, run.pk, f"Unexpected error: {exc.__class__.__name__}: {exc}", started_at=run.started_at)
        raise

    rows = [asdict(row) for row in result.validation]
    for n, row in enumerate(rows):  # keep the page light: full texts for the first samples only
        if n >= VALIDATION_SAMPLES_WITH_TEXT:
            row["initial_prompt"] = row["refined_prompt"] = ""
    seconds = [s.seconds for s in result.steps]
    with transaction.atomic():
        ours.update(
            status=pm.JobStatus.DONE, progress=100, curve=[asdict(s) for s in result.steps], step=len(result.steps),
            validation=rows, reward_initial=result.reward_initial, reward_refined=result.reward_refined,
            accepted_share=result.accepted_share, seconds_per_step=round(statistics.median(seconds), 2) if seconds else None,
            checkpoint=str(output.relative_to(settings.VAR_DIR)), finished_at=timezone.now(),
            message=(f"Validation on {len(rows)} examples: initial {_fmt(result.reward_initial)}, "
                     f"refined {_fmt(result.reward_refined)}"))
    return RefinementRun.objects.get(pk=run.pk)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def refinement_run_as_json(run: RefinementRun) -> dict:
    return {
        "run_id": run.pk, "version": run.version, "status": run.status, "steps": run.step,
        "reward_initial": run.reward_initial, "reward_refined": run.reward_refined, "accepted_share": run.accepted_share,
        "seconds_per_step": run.seconds_per_step,
        "checkpoint": str(settings.VAR_DIR / run.checkpoint) if run.checkpoint else None,
        "train_examples": run.train_examples, "validation_examples": run.validation_examples,
        "curve": run.curve, "config": run.config, "error": run.error, "promoted": run.promoted,
    }


# --- using the promoted policy ---------------------------------------------------------------------------


def policy_refinement(run: RefinementRun, *, initial_text: str, sections: list[dict], risk_flags: list[dict],
                      identifiers: list[str], token_budget: int) -> tuple[str, str, list[dict]]:
    """The run's policy rewrites a prompt and the guard checks it: (refined text, instructions, problems).

    Guidance requests and evaluations share it; any problem means the refined prompt is not used."""
    try:
        answer, truncated = _policy_answer(settings.VAR_DIR / run.checkpoint, initial_text,
                                           max_tokens=run.config.get("max_completion_tokens", 96))
    except (LLMError, OSError) as exc:
        return "", "", [{"kind": "policy_error", "label": "the policy failed", "detail": str(exc)[:300]}]
    instructions = clean_instructions(answer, truncated=truncated)
    text = refined_text(sections, instructions)
    problems = check_refined(
        initial_text=initial_text, initial_sections=sections, risk_flag_labels=[f["label"] for f in risk_flags],
        refined=text, instructions=instructions, identifiers=identifiers, count_tokens=count_tokens, token_budget=token_budget)
    return text, instructions, [p.as_dict() for p in problems]


def prompt_refine(*, prompt: PersonalizedPrompt, patient: pm.Patient) -> tuple[PersonalizedPrompt, dict]:
    """The prompt to send: the promoted policy's refinement when it passes the guard, else the initial one.

    Returns the prompt and what happened ({} when no policy is promoted). A refined prompt that
    drops a risk flag or a fact, names her, invents a number, runs over budget or is malformed is
    never used; the reasons are recorded on the guidance request."""
    run = promoted_run(patient.organisation_id)
    if run is None:
        return prompt, {}
    info = {"run": run.pk, "version": run.version, "used": False, "instructions": "", "problems": []}
    existing = PersonalizedPrompt.objects.filter(refined_from=prompt, refinement_run=run).first()
    if existing is not None:
        instructions = next((s["text"] for s in existing.sections if s.get("refined")), "")
        return existing, {**info, "used": True, "instructions": instructions}
    text, instructions, problems = policy_refinement(
        run, initial_text=prompt.text, sections=prompt.sections, risk_flags=prompt.risk_flags,
        identifiers=patient_identifiers(patient), token_budget=prompt.template.token_budget)
    info = {**info, "instructions": instructions, "problems": problems}
    if problems:
        return prompt, info
    fingerprint = hashlib.sha256(f"{prompt.inputs_hash}:refined-by-run-{run.pk}".encode()).hexdigest()
    fields_ = dict(
        question=prompt.question, consultation_date=prompt.consultation_date, template=prompt.template,
        template_version=f"{prompt.template_version}+rl{run.version}", peer_model=prompt.peer_model,
        peer_model_version=prompt.peer_model_version, text=text, sections=refined_sections(prompt.sections, instructions),
        risk_flags=prompt.risk_flags, peers=prompt.peers, token_count=count_tokens(text), refined_from=prompt,
        refinement_run=run, created_by=prompt.created_by)
    try:
        with transaction.atomic():
            refined, _ = PersonalizedPrompt.objects.get_or_create(patient=patient, inputs_hash=fingerprint, defaults=fields_)
    except IntegrityError:
        refined = PersonalizedPrompt.objects.get(patient=patient, inputs_hash=fingerprint)
    return refined, {**info, "used": True}
