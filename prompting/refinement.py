"""Prompt refinement by reinforcement learning: runs, their policies, and the promoted one.

Every surface (run pages, admin actions, `refine_prompts`, the Celery task, guidance requests,
evaluations) calls these functions. The method itself (the edit menu, rewards, the guard, GRPO
training, validation) is in `prompting.pmlm`.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, fields
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from patients import models as pm
from patients.jobs import (
    job_cancel,
    job_claim,
    job_claimed,
    job_fail,
    job_finish,
    job_progress,
    job_should_stop,
    job_stopped,
)
from prompting.encounters import (
    ENCOUNTER_QUESTION,
    EncounterPrompt,
    encounter_prompt,
    encounters_of,
    held_out_peers,
    learning_peers,
    patient_split,
    peers_today,
    target_answerer,
)
from prompting.endpoints import endpoint_default, endpoint_named
from prompting.errors import GuidanceError, RefinementError
from prompting.llm import LLMError
from prompting.models import ClinicianRating, PersonalizedPrompt, RefinementRun
from prompting.pmlm.composer import render
from prompting.pmlm.edits import IDENTITY, MENU_VERSION, edit_named, edited_sections
from prompting.pmlm.grounding import active_medicines
from prompting.pmlm.holdout import DEFAULT_SHARE
from prompting.pmlm.policy import BASE_POLICY_NAME, build_base_checkpoint, is_checkpoint
from prompting.pmlm.refine import check_refined
from prompting.pmlm.retrieval import default_embedder
from prompting.pmlm.rewards import Reference, RewardWeights
from prompting.pmlm.situation import situation_summary
from prompting.pmlm.training import (
    EditPolicy,
    Example,
    RefinementConfig,
    Scorer,
    Stopped,
    default_config,
    deployed_choice,
    deployed_overall,
    deployment_by_sources,
    edit_to_send,
    fixed_edit_choice,
    reward_table,
    train_policy,
    validate,
    validation_summary,
    what_the_policy_learned,
)
from prompting.prompts import PromptError, count_tokens, prompt_template_active, template_spec
from prompting.selectors import patient_identifiers
from prompting.tasks import run_refinement_task

ENDORSED, REJECTED = 4.0, 2.0  # mean clinician rating at or above / at or below
VALIDATION_SAMPLES_WITH_TEXT = 8
INVALID_CODE_PENALTY = 0.02


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
    import torch  # lazily: only a run being created asks which device there is

    return "cuda" if torch.cuda.is_available() else "cpu"


# --- creating, cancelling, promoting ---------------------------------------------------------------


def refinement_run_create(
    *,
    organisation: pm.Organisation,
    user=None,
    steps: int | None = None,
    max_examples: int | None = None,
    num_generations: int | None = None,
    endpoint_name: str = "",
    device: str = "",
    max_validation: int | None = None,
) -> RefinementRun:
    for name, value in (
        ("steps", steps),
        ("max_examples", max_examples),
        ("num_generations", num_generations),
        ("max_validation", max_validation),
    ):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1 or value > 10_000):
            raise RefinementError(f"{name} must be a whole number from 1 to 10000, got {value!r}.")
    if num_generations is not None and num_generations < 2:
        raise RefinementError("A group needs at least 2 generations to compare.")
    try:
        endpoint = endpoint_named(endpoint_name) if endpoint_name else endpoint_default()
    except GuidanceError as exc:
        raise RefinementError(str(exc)) from None
    config = default_config(
        device or _device(),
        steps=steps,
        max_examples=max_examples,
        num_generations=num_generations,
        max_validation=max_validation,
    )
    with transaction.atomic():
        last = RefinementRun.objects.select_for_update().filter(organisation=organisation).order_by("-version").first()
        return RefinementRun.objects.create(
            organisation=organisation,
            version=(last.version + 1) if last else 1,
            created_by=user,
            config={
                **config.as_dict(),
                "target_endpoint": endpoint.name,
                "retrieval": [True, False],
                "target_max_tokens": config.target_max_tokens or endpoint.max_tokens,
                "share": DEFAULT_SHARE,
                "question": ENCOUNTER_QUESTION,
                "weights": RewardWeights().as_dict(),
            },
            message="Queued: waiting for a worker",
        )


def refinement_run_queue(*, run: RefinementRun):
    transaction.on_commit(lambda: run_refinement_task.delay(run.pk))


def refinement_run_cancel(*, run: RefinementRun) -> RefinementRun:
    """A queued run stops at once; a running one stops after the answer or step it is on."""
    return job_cancel(RefinementRun, run.pk, while_running="Cancelling after the current answer or step…")


def refinement_run_promote(*, run: RefinementRun, user=None) -> RefinementRun:
    """Guidance requests of the run's organisation refine their prompts with this policy from now on."""
    if run.status != pm.JobStatus.DONE or not run.checkpoint:
        raise RefinementError("Only a finished run with a checkpoint can be promoted.")
    if not is_checkpoint(settings.VAR_DIR / run.checkpoint):
        raise RefinementError(f"The checkpoint of run {run.version} is missing from {run.checkpoint}.")
    if run.config.get("menu") != MENU_VERSION:
        raise RefinementError(
            f"Run {run.version} learned a rewriting policy this version no longer uses; start a new run."
        )
    with transaction.atomic():
        RefinementRun.objects.select_for_update().filter(organisation=run.organisation, promoted=True).update(
            promoted=False
        )
        RefinementRun.objects.filter(pk=run.pk).update(promoted=True, promoted_by=user, promoted_at=timezone.now())
    run.refresh_from_db()
    return run


def refinement_run_demote(*, run: RefinementRun) -> RefinementRun:
    RefinementRun.objects.filter(pk=run.pk).update(promoted=False)
    run.refresh_from_db()
    return run


def promoted_run(organisation_id: int) -> RefinementRun | None:
    return RefinementRun.objects.filter(organisation_id=organisation_id, promoted=True).first()


# --- training and validation examples ------------------------------------------------------------------


def clinician_references(patient: pm.Patient) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Guidance clinicians rated well (mean ≥ 4) and poorly (mean ≤ 2) for her."""
    by_guidance: dict[int, list[float]] = defaultdict(list)
    texts = {}
    for rating in ClinicianRating.objects.filter(
        guidance__patient=patient, guidance__status=pm.JobStatus.DONE
    ).select_related("guidance"):
        by_guidance[rating.guidance_id].append(rating.mean)
        texts[rating.guidance_id] = rating.guidance.text
    endorsed = tuple(
        texts[g] for g, means in by_guidance.items() if statistics.fmean(means) >= ENDORSED and texts[g].strip()
    )
    rejected = tuple(
        texts[g] for g, means in by_guidance.items() if statistics.fmean(means) <= REJECTED and texts[g].strip()
    )
    return endorsed, rejected


def _example(asked: EncounterPrompt, spec, question: str, references: dict) -> Example:
    rec = asked.recommendation
    if rec.patient_id not in references:
        references[rec.patient_id] = clinician_references(rec.patient)
    endorsed, rejected = references[rec.patient_id]
    return Example(
        key=f"visit of {asked.at:%-d %b %Y} (encounter {rec.encounter_id}), sources {'on' if asked.rag else 'off'}",
        patient=rec.patient_id,
        initial_text=asked.composed.text,
        sections=asked.composed.sections,
        risk_flag_labels=[f["label"] for f in asked.flags],
        reference=Reference(rec.text, endorsed, rejected),
        token_budget=spec.token_budget,
        question=question,
        identifiers=asked.identifiers,
        rag=asked.rag,
        medicines=active_medicines(asked.history),
    )


def refinement_examples(
    *,
    organisation: pm.Organisation,
    config: RefinementConfig,
    question: str = ENCOUNTER_QUESTION,
    retrieval: tuple[bool, ...] = (True, False),
    share: float = DEFAULT_SHARE,
    on_progress=None,
) -> tuple[list[Example], list[Example]]:
    """(training, validation) examples, each encounter asked with and without guidance sources.

    Training: up to `max_examples` encounters of learning patients (`examples_per_patient` each, seeded),
    their peers from the other learning patients. Validation: the evaluation's held-out
    encounters, their peers from the learning patients, built exactly as the evaluation builds
    them, so the evaluation reads the same cached answers."""
    learning, held_out = patient_split(organisation, seed=config.seed, share=share)
    training_recs = encounters_of(learning, seed=config.seed, per_patient=config.examples_per_patient)[
        : config.max_examples
    ]
    validation_recs = encounters_of(held_out, seed=config.seed)[: config.max_validation]
    if not training_recs:
        raise RefinementError(
            "Too few encounters with a physician recommendation to learn from: the learning patients have none."
        )
    on = peers_today()
    train_patients = sorted({r.patient_id for r in training_recs})
    peers = learning_peers(organisation=organisation, learning=learning, patients=train_patients, on=on)
    peers.update(
        held_out_peers(
            organisation=organisation,
            learning=learning,
            patients=sorted({r.patient_id for r in validation_recs}),
            on=on,
        )
    )
    spec = template_spec(prompt_template_active())
    references: dict[int, tuple] = {}
    sides: tuple[list[Example], list[Example]] = ([], [])
    total, n = (len(training_recs) + len(validation_recs)) * len(retrieval), 0
    for side, recs in zip(sides, (training_recs, validation_recs)):
        for rec in recs:
            for rag in retrieval:
                n += 1
                if on_progress:
                    on_progress(n, total)
                asked = encounter_prompt(rec, spec=spec, peer=peers.get(rec.patient_id), rag=rag, question=question)
                side.append(_example(asked, spec, question, references))
    return sides


# --- running ---------------------------------------------------------------------------------------------


def _config(run: RefinementRun) -> RefinementConfig:
    names = {f.name for f in fields(RefinementConfig)}
    return RefinementConfig(**{k: v for k, v in run.config.items() if k in names})


class _RunProgress:
    """What a running run reports as it goes: its progress bar and message, and the reward curve step by step."""

    def __init__(self, run: RefinementRun, on_progress=None):
        self.run, self.on_progress, self.curve = run, on_progress, []

    def progress(self, percent: int, message: str):
        job_progress(self.run, percent, message)
        if self.on_progress:
            self.on_progress(percent, message)

    def on_step(self, record):
        self.curve.append(asdict(record))
        job_claimed(self.run).update(step=record.step, curve=self.curve)

    def should_stop(self) -> bool:
        return job_should_stop(self.run)


def refinement_run_execute(*, run_id: int, on_progress=None) -> RefinementRun:
    # A run redelivered after its worker died starts again from the base policy (its answers are cached).
    run = job_claim(RefinementRun, run_id, step=0, curve=[], progress=0, message="Starting")
    if run is None:
        return RefinementRun.objects.get(pk=run_id)
    output = settings.VAR_DIR / "models" / "refiner" / f"{run.organisation.slug}-run-{run.version}"
    started = time.monotonic()
    reporter = _RunProgress(run, on_progress)
    try:
        steps, rows, report = _train_and_validate(
            run, output, reporter.progress, reporter.on_step, should_stop=reporter.should_stop
        )
    except Stopped:
        job_stopped(run, f"Cancelled after step {len(reporter.curve)}" if reporter.curve else "Cancelled")
        if not RefinementRun.objects.filter(pk=run.pk, status=pm.JobStatus.RUNNING).exists():  # nobody trains into it
            shutil.rmtree(output, ignore_errors=True)
        return RefinementRun.objects.get(pk=run.pk)
    except (RefinementError, GuidanceError, PromptError, LLMError, ValueError) as exc:
        job_fail(run, str(exc))
        return RefinementRun.objects.get(pk=run.pk)
    except Exception as exc:
        job_fail(run, f"Unexpected error: {exc.__class__.__name__}: {exc}")
        raise
    report["minutes"] = round((time.monotonic() - started) / 60, 1)
    _finish(run, output, steps, rows, report)
    return RefinementRun.objects.get(pk=run.pk)


def _finish(run: RefinementRun, output: Path, steps, rows, report: dict) -> None:
    """A run's results stored in one write: curve, validation rows (full texts for the first few), report."""
    stored = [asdict(row) for row in rows]
    for n, row in enumerate(stored):  # keep the page light: full texts for the first samples only
        if n >= VALIDATION_SAMPLES_WITH_TEXT:
            row["initial_prompt"] = row["refined_prompt"] = ""
    seconds = [s.seconds for s in steps]
    summary = report["validation"]
    with transaction.atomic():
        job_finish(
            run,
            curve=[asdict(s) for s in steps],
            step=len(steps),
            validation=stored,
            reward_initial=summary.get("reward_initial"),
            reward_refined=summary.get("reward_refined"),
            accepted_share=round(statistics.fmean(r.accepted for r in rows), 3) if rows else None,
            seconds_per_step=round(statistics.median(seconds), 2) if seconds else None,
            report=report,
            target_calls=report["target_calls"],
            checkpoint=str(output.relative_to(settings.VAR_DIR)),
            message=(
                f"Held out: {summary.get('n', 0)} answers of {summary.get('patients', 0)} patients, refined − initial "
                f"{difference_text(summary.get('difference'), summary.get('ci'))}; {deployment_text(report)}"
            ),
        )


SETTING_WORDS = {"on": "with guidance sources", "off": "without guidance sources"}


def deployment_text(report: dict) -> str:
    """What a run deploys, per guidance-sources setting where it chose per setting, and why not the policy."""
    blocks = report.get("by_sources") or {"": report}
    parts = []
    for setting, block in blocks.items():
        who = SETTING_WORDS.get(setting, "for everyone")
        if block.get("deployed", "policy") == "policy":
            parts.append(f"{who}, the policy")
        else:
            parts.append(f"{who}, the best fixed edit {block['best_fixed']['code']}: {_why_not_the_policy(block)}")
    return "deployed " + "; ".join(parts)


def set_aside_reasons(aside: dict, initial_precision: float | None) -> str:
    """Why the edit with the best reward was not deployed, in the curators' words. Runs from before the
    grounding guardrail recorded only the precision it lowered."""
    reasons = aside.get("reasons")
    if reasons is None:
        precision = aside.get("key_item_precision")
        reasons = [f"it lowered key-item precision to {precision:.3f}" if precision is not None else "a guardrail"]
        if precision is not None and initial_precision is not None:
            reasons[0] += f" (initial prompt {initial_precision:.3f})"
    return " and ".join(reasons)


def _why_not_the_policy(report: dict) -> str:
    """Why a run (or one sources setting of it) deployed its best fixed edit, from its training patients' figures."""
    why = (
        f"on its training patients the policy scored {report['policy_train_mean_reward']:.3f} against "
        f"{report['best_fixed_train_mean_reward']:.3f}"
    )
    precision, initial = (
        report.get("policy_train_key_item_precision"),
        report["best_fixed"].get("initial_key_item_precision"),
    )
    if precision is not None and initial is not None:
        why += f", key-item precision {precision:.3f} against {initial:.3f} for the initial prompt"
    claims, initial_claims = (
        report.get("policy_train_unsupported_claims"),
        report["best_fixed"].get("initial_unsupported_claims"),
    )
    if claims is not None and initial_claims is not None:
        why += f", unsupported claims about her {claims:.2f} per answer against {initial_claims:.2f}"
    return why


def run_scorer(run: RefinementRun):
    """(the run's target LLM, cached by prompt hash; its scorer: guard, answer, closeness to the physician)."""
    answerer = target_answerer(run.config["target_endpoint"], run.config.get("target_max_tokens"))
    scorer = Scorer(
        answer=answerer,
        embed=default_embedder().embed,
        count_tokens=count_tokens,
        weights=RewardWeights.from_dict(run.config.get("weights")),
        distinct_calls=lambda: answerer.calls,
    )
    return answerer, scorer


def _train_and_validate(run: RefinementRun, output: Path, progress, on_step, should_stop):
    """The run's four stages: examples, the reward table and best fixed edit, GRPO, validation."""
    config = _config(run)
    stages, clock = {}, time.monotonic()

    def stage_done(name: str):
        nonlocal clock
        stages[name] = round((time.monotonic() - clock) / 60, 1)
        clock = time.monotonic()

    progress(1, "Preparing the policy's starting checkpoint")
    base = refiner_base_checkpoint()
    train, validation = refinement_examples(
        organisation=run.organisation,
        config=config,
        question=run.config.get("question", ENCOUNTER_QUESTION),
        retrieval=tuple(run.config.get("retrieval", (True, False))),
        share=run.config.get("share", DEFAULT_SHARE),
        on_progress=lambda n, total: progress(
            1 + int(4 * n / total), f"Building the initial prompt of example {n}/{total}"
        ),
    )
    RefinementRun.objects.filter(pk=run.pk).update(
        train_examples=len(train),
        train_patients=len({e.patient for e in train}),
        trained_patients=sorted({e.patient for e in train}),
        validation_examples=len(validation),
        validation_patients=len({e.patient for e in validation}),
    )
    stage_done("examples")
    answerer, scorer = run_scorer(run)
    table = reward_table(
        train,
        scorer,
        should_stop=should_stop,
        on_progress=lambda n, total: progress(
            5 + int(55 * n / total),
            f"Answering every edit of training example {n}/{total} ({answerer.calls} distinct answers)",
        ),
    )
    pooled = fixed_edit_choice(train, table, scorer)  # one edit for everyone: the baseline the report names
    stage_done("reward_table")
    if output.exists():
        shutil.rmtree(output)
    steps = train_policy(
        base_checkpoint=base,
        output_dir=output,
        train=train,
        table=table,
        config=config,
        # Not a code of the menu: as used, the initial prompt is sent; a little less teaches validity.
        invalid_reward=lambda example: table[example.key][IDENTITY] - INVALID_CODE_PENALTY,
        on_step=on_step,
        should_stop=should_stop,
        on_progress=progress,
    )
    stage_done("training")
    policy = EditPolicy(output, device=config.device)
    choices = {e.key: policy.choose(e.situation)[0] for e in train}
    per_setting = deployment_by_sources(train, table, choices, scorer)
    # What the policy chooses held out, deployed or not (the run page shows what it learned): chosen once.
    choices.update({e.key: policy.choose(e.situation)[0] for e in validation})
    # Validation asks what guidance requests will send (`edit_to_send`), for each example's sources setting.
    deployment = {"by_sources": per_setting, "best_fixed": pooled, "deployed": deployed_overall(per_setting)}

    def deployed_for(example: Example) -> str:
        sent = edit_to_send(deployment, example.sections)
        return choices[example.key] if sent == "policy" else sent

    def fixed_for(example: Example) -> str:
        return edit_to_send(deployment, example.sections, fixed=True)

    rows = validate(
        validation,
        scorer,
        deployed_for,
        fixed_for,
        should_stop=should_stop,
        on_progress=lambda n, total: progress(
            75 + int(23 * n / total), f"Validating {n}/{total}: initial prompt, the deployed edit, the best fixed edit"
        ),
    )
    stage_done("validation")
    report = {
        "menu": MENU_VERSION,
        "target_calls": answerer.calls,
        "target_max_tokens": answerer.max_tokens,
        "best_fixed": {
            k: v for k, v in pooled.items() if k not in ("set_aside", "edit_precision", "edit_unsupported_claims")
        },
        # The edit with the best reward when a guardrail (key-item precision, grounding) stopped it on the
        # training patients: never deployed.
        "set_aside": pooled["set_aside"],
        "edit_precision": pooled["edit_precision"],
        "edit_unsupported_claims": pooled["edit_unsupported_claims"],
        # Per guidance-sources setting: its best fixed edit under the guardrail, and whether the policy is deployed.
        "by_sources": per_setting,
        "oracle_mean_reward": round(statistics.fmean(max(row.values()) for row in table.values()), 4),
        "validation": validation_summary(rows, seed=config.seed),
        "learned": what_the_policy_learned([*train, *validation], choices, table),
        "stage_minutes": stages,
        **deployed_choice(train, table, choices, pooled["code"], scorer),  # the policy's training figures, pooled
        "deployed": deployment["deployed"],
    }
    return steps, rows, report


def difference_text(difference, ci) -> str:
    """A paired difference with its interval, as the run page, its message and the command say it."""
    if difference is None:
        return "—"
    return f"{difference:+.3f}" + (f" (95% CI {ci[0]:+.3f} to {ci[1]:+.3f})" if ci else "")


def refinement_run_as_json(run: RefinementRun) -> dict:
    report = run.report or {}
    validation = report.get("validation") or {}
    return {
        "run_id": run.pk,
        "version": run.version,
        "status": run.status,
        "steps": run.step,
        "reward_initial": run.reward_initial,
        "reward_refined": run.reward_refined,
        "accepted_share": run.accepted_share,
        "minutes": report.get("minutes"),
        "stage_minutes": report.get("stage_minutes", {}),
        "target_calls": run.target_calls,
        "validation": {
            "n": validation.get("n", 0),
            "patients": validation.get("patients", 0),
            "difference": validation.get("difference"),
            "ci": validation.get("ci"),
            "key_item_precision": validation.get("key_item_precision"),
            "unsupported_claims": validation.get("unsupported_claims"),
            "by_sources": validation.get("by_sources", {}),
            "vs_best_fixed": validation.get("vs_best_fixed"),
        },
        "best_fixed_edit": report.get("best_fixed"),
        "set_aside": report.get("set_aside"),
        "by_sources": report.get("by_sources"),
        "learned": report.get("learned"),
        "deployed": report.get("deployed", "policy"),
        "policy_train_mean_reward": report.get("policy_train_mean_reward"),
        "policy_train_key_item_precision": report.get("policy_train_key_item_precision"),
        "policy_train_unsupported_claims": report.get("policy_train_unsupported_claims"),
        "seconds_per_step": run.seconds_per_step,
        "checkpoint": str(settings.VAR_DIR / run.checkpoint) if run.checkpoint else None,
        "train_examples": run.train_examples,
        "validation_examples": run.validation_examples,
        "curve": run.curve,
        "config": run.config,
        "error": run.error,
        "promoted": run.promoted,
    }


# --- using a run's policy -----------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _edit_policy(checkpoint: str, device: str) -> EditPolicy:
    """A run's policy, loaded once per worker process."""
    return EditPolicy(checkpoint, device=device)


def policy_edit(run: RefinementRun, situation: str) -> tuple[str, dict[str, float]]:
    """The edit the run's policy chooses for a situation, and its probability for each edit of the menu."""
    if run.config.get("menu") != MENU_VERSION:
        raise RefinementError(f"Run {run.version} learned a rewriting policy this version no longer uses.")
    return _edit_policy(str(settings.VAR_DIR / run.checkpoint), "cpu").choose(situation)


def policy_refinement(
    run: RefinementRun,
    *,
    initial_text: str,
    sections: list[dict],
    risk_flags: list[dict],
    question: str,
    identifiers: list[str],
    token_budget: int,
    fixed: bool = False,
) -> dict:
    """The run's edit of a prompt, checked by the guard: {text, sections, edit, label, problems, probabilities}.

    `fixed`: the run's best fixed edit instead of the policy's choice for her. Guidance requests
    and evaluations share it; any problem means the refined prompt is not used."""
    labels = [f["label"] for f in risk_flags]
    probabilities = {}
    # A run whose policy did worse than the template while learning deploys its best fixed edit.
    try:
        code = edit_to_send(run.report or {}, sections, fixed=fixed)
        if code == "policy":
            code, probabilities = policy_edit(run, situation_summary(sections, labels, question))
        edit = edit_named(code)
    except (RefinementError, LLMError, OSError, ValueError) as exc:
        return {
            "text": "",
            "sections": [],
            "edit": "",
            "label": "",
            "probabilities": {},
            "problems": [{"kind": "policy_error", "label": "the policy failed", "detail": str(exc)[:300]}],
        }
    if edit.code == IDENTITY:
        edited, text, problems = list(sections), initial_text, []
    else:
        edited = edited_sections(sections, edit, labels)
        text = render(edited)
        problems = check_refined(
            initial_text=initial_text,
            initial_sections=sections,
            risk_flag_labels=labels,
            refined=text,
            identifiers=identifiers,
            count_tokens=count_tokens,
            token_budget=token_budget,
        )
    return {
        "text": text,
        "sections": edited,
        "edit": edit.code,
        "label": edit.label,
        "probabilities": probabilities,
        "problems": [p.as_dict() for p in problems],
    }


def prompt_refine(*, prompt: PersonalizedPrompt, patient: pm.Patient) -> tuple[PersonalizedPrompt, dict]:
    """The prompt to send: the promoted policy's edit when it passes the guard, else the initial one.

    Returns the prompt and what happened ({} when no policy is promoted). When the policy keeps the
    prompt as it is (E0), the initial prompt is sent and marked as the policy's choice. A refined
    prompt that drops a risk flag or a fact, names her, invents a number or runs over budget is
    never used; the reasons are recorded on the guidance request."""
    run = promoted_run(patient.organisation_id)
    if run is None:
        return prompt, {}
    info = {"run": run.pk, "version": run.version, "used": False, "edit": "", "label": "", "problems": []}
    existing = PersonalizedPrompt.objects.filter(refined_from=prompt, refinement_run=run).first()
    if existing is not None:
        code = next((s["edit"] for s in existing.sections if s.get("edit")), "")
        return existing, {**info, "used": True, "edit": code, "label": edit_named(code).label if code else ""}
    refined = policy_refinement(
        run,
        initial_text=prompt.text,
        sections=prompt.sections,
        risk_flags=prompt.risk_flags,
        question=prompt.question,
        identifiers=patient_identifiers(patient),
        token_budget=prompt.template.token_budget,
    )
    info = {**info, "edit": refined["edit"], "label": refined["label"], "problems": refined["problems"]}
    if refined["problems"]:
        return prompt, info
    if refined["edit"] == IDENTITY:
        return prompt, {**info, "used": True}
    fingerprint = hashlib.sha256(f"{prompt.inputs_hash}:refined-by-run-{run.pk}".encode()).hexdigest()
    fields_ = dict(
        question=prompt.question,
        consultation_date=prompt.consultation_date,
        template=prompt.template,
        template_version=f"{prompt.template_version}+rl{run.version}",
        peer_model=prompt.peer_model,
        peer_model_version=prompt.peer_model_version,
        text=refined["text"],
        sections=refined["sections"],
        risk_flags=prompt.risk_flags,
        peers=prompt.peers,
        token_count=count_tokens(refined["text"]),
        refined_from=prompt,
        refinement_run=run,
        created_by=prompt.created_by,
    )
    try:
        with transaction.atomic():
            stored, _ = PersonalizedPrompt.objects.get_or_create(
                patient=patient, inputs_hash=fingerprint, defaults=fields_
            )
    except IntegrityError:
        stored = PersonalizedPrompt.objects.get(patient=patient, inputs_hash=fingerprint)
    return stored, {**info, "used": True}
