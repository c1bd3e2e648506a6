"""Guidance: the personalised prompt, grounded in retrieved guidance, answered by an LLM, checked.

`guidance_request_create` is the one entry point (page, API, command, comparison runner);
`guidance_request_run` does the work, in a Celery task or inline for `ask`. It is idempotent: a
finished request is left alone and a retried one overwrites its own row, never adds another.
"""

from __future__ import annotations

import logging
import re
import time
from datetime import date

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction

from audit.models import AuditAction
from audit.services import audit_record
from patients import models as pm
from patients.jobs import job_claim, job_claimed, job_fail, job_finish, job_progress
from prompting.consultation import (
    SYSTEM_MESSAGE,
    guidance_messages,
    guidance_passages,
    passage_citations,
    question_prompt,
)
from prompting.endpoints import endpoint_default, endpoint_named
from prompting.errors import GuidanceBusy, GuidanceError
from prompting.llm import LLMError, build_backend
from prompting.models import ComparisonResult, ComparisonRun, GuidanceRequest, LLMEndpoint
from prompting.pmlm.deidentify import leaks, scrub
from prompting.pmlm.grounding import guidance_claims
from prompting.pmlm.safety import NOTICE, safety_warnings
from prompting.pmlm.state import current_pregnancy
from prompting.prompts import MAX_QUESTION_CHARS, PromptError, consultation_date_check, count_tokens, prompt_prefix
from prompting.refinement import prompt_refine
from prompting.selectors import patient_history, patient_identifiers
from prompting.tasks import prefill_guidance_task, run_comparison_task, run_guidance_task

__all__ = [
    "GuidanceBusy",
    "GuidanceError",
    "endpoint_default",
    "endpoint_named",
]  # raised and named by callers of guidance
logger = logging.getLogger(__name__)
FLUSH_SECONDS = 0.5


def _refuse_when_busy(patient: pm.Patient, user):
    """Queued or running requests are capped per account (an API token's, or a clinician's) and per organisation.
    Call inside the transaction that creates the request, after locking the organisation's row."""
    pending = GuidanceRequest.objects.filter(
        patient__organisation_id=patient.organisation_id, status__in=(pm.JobStatus.QUEUED, pm.JobStatus.RUNNING)
    )
    limit = settings.PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION
    if pending.count() >= limit:
        raise GuidanceBusy(
            f"Your organisation already has {limit} guidance requests waiting for an answer: "
            "try again when some have finished."
        )
    limit = settings.PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT
    if user is not None and user.is_authenticated and pending.filter(created_by=user).count() >= limit:
        raise GuidanceBusy(
            f"You already have {limit} guidance requests waiting for an answer: try again when some have finished."
        )


def guidance_request_create(
    *,
    patient: pm.Patient,
    question: str,
    at: date | None = None,
    endpoint: LLMEndpoint | None = None,
    use_retrieval: bool = True,
    use_refinement: bool = True,
    user=None,
    idempotency_key: str = "",
    run_inline: bool = False,
) -> GuidanceRequest:
    question = (question or "").strip()
    if not question:
        raise GuidanceError("Type a question.")
    if len(question) > MAX_QUESTION_CHARS:
        raise GuidanceError(f"The question is longer than {MAX_QUESTION_CHARS} characters.")
    try:
        at = consultation_date_check(at)
    except PromptError as exc:
        raise GuidanceError(str(exc)) from None
    endpoint = endpoint or endpoint_default()
    if idempotency_key:
        existing = GuidanceRequest.objects.filter(patient=patient, idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing
    if not run_inline:
        _refuse_when_busy(patient, user)  # a first, unlocked look: a refused request builds nothing
    # Her prompt is built here, in the request (tens of milliseconds), and shown at once: only the LLM waits for a
    # worker.
    timings = {}
    try:
        prompt, passages, _, _ = question_prompt(
            patient=patient, question=question, at=at, use_retrieval=use_retrieval, user=user, timings=timings
        )
    except PromptError as exc:
        raise GuidanceError(str(exc)) from None
    try:
        with transaction.atomic():
            if not run_inline:  # queued work is capped; inline work is done by the caller itself
                pm.Organisation.objects.select_for_update().filter(pk=patient.organisation_id).first()
                _refuse_when_busy(patient, user)
            guidance = GuidanceRequest.objects.create(
                patient=patient,
                question=question,
                consultation_date=at,
                endpoint=endpoint,
                use_retrieval=use_retrieval,
                use_refinement=use_refinement,
                idempotency_key=idempotency_key,
                prompt=prompt,
                citations=passage_citations(passages),
                timings=timings,
                created_by=user if user is not None and user.is_authenticated else None,
            )
            audit_record(
                AuditAction.REQUEST_GUIDANCE,
                obj=guidance,
                organisation_id=patient.organisation_id,
                details={"patient": patient.pk, "endpoint": endpoint.name, "retrieval": use_retrieval},
            )
            if not run_inline:
                transaction.on_commit(lambda: run_guidance_task.delay(guidance.pk))
    except IntegrityError:  # the same key at the same moment
        return GuidanceRequest.objects.get(patient=patient, idempotency_key=idempotency_key)
    if run_inline:
        guidance_request_run(guidance_id=guidance.pk)
        guidance.refresh_from_db()
    return guidance


def guidance_prefill(
    *,
    patient: pm.Patient,
    at: date | None = None,
    endpoint: LLMEndpoint | None = None,
    knowledge: list[str] | None = None,
) -> int:
    """Have the endpoint read the start of her prompt (instructions, her record, her peers) before she is asked
    about, so that a question costs only its guidance sources and itself; with `knowledge` (the sources of a question
    being typed), the start runs on through them, so that asking costs only the question's own words. Only an
    in-process model keeps what it read; for other endpoints nothing is done. Returns the prompt tokens read."""
    endpoint = endpoint or endpoint_default()
    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    prefill = getattr(backend, "prefill", None)
    if prefill is None:
        return 0
    messages = [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": prompt_prefix(patient=patient, at=at, knowledge=knowledge)},
    ]
    return prefill(_guard_identifiers(messages, endpoint, patient))


def _prefill_queue(key: str, args: tuple, kwargs: dict | None = None):
    """Queue a prefill on the interactive lane once per `key` in PMLM_PREFILL_EXPIRES_SECONDS, dropped if no worker
    takes it by then. A broker or cache that fails never fails the page: the question reads the prompt itself."""
    expires = settings.PMLM_PREFILL_EXPIRES_SECONDS
    try:
        if cache.add(key, 1, timeout=expires):  # not if queued a moment ago
            prefill_guidance_task.apply_async(args, kwargs=kwargs or {}, expires=expires, retry=False)
    except Exception:  # noqa: BLE001
        logger.warning("Prefill %s not queued", key, exc_info=True)


def _prefilled_locally(endpoint: LLMEndpoint | None) -> bool:
    return (
        settings.PMLM_PREFILL_ON_OPEN
        and not settings.CELERY_TASK_ALWAYS_EAGER
        and (endpoint is not None and endpoint.kind == LLMEndpoint.Kind.LLAMACPP)
    )


def guidance_prefill_soon(*, patient: pm.Patient, endpoints: list[LLMEndpoint] | None = None):
    """When a clinician opens her record: prefill on the interactive lane, dropped if no worker takes it within
    PMLM_PREFILL_EXPIRES_SECONDS (a question asked by then reads the prefix itself). Best effort: once per patient
    in that time, only for an in-process default model, and a broker or cache that fails never fails the page.
    `endpoints`: the active ones, when the page has read them already."""
    if not settings.PMLM_PREFILL_ON_OPEN or settings.CELERY_TASK_ALWAYS_EAGER:
        return
    if endpoints is not None:
        endpoint = next((e for e in endpoints if e.is_default), None)
    else:
        endpoint = LLMEndpoint.objects.filter(is_default=True, active=True).only("kind").first()
    if _prefilled_locally(endpoint):
        transaction.on_commit(lambda: _prefill_queue(f"prefill:{patient.pk}", (patient.pk,)))


def guidance_prefill_while_typing(
    *, patient: pm.Patient, question: str, at: date | None = None, endpoint: LLMEndpoint | None = None
) -> list[int]:
    """While the clinician types a question grounded in guidance sources: retrieve its sources now and have the
    local model read her prompt up to the question's words (interactive lane), so that asking reads only what she
    typed. Only the passages' ids travel to the worker, never what she is typing; the same sources are queued once
    in PMLM_PREFILL_EXPIRES_SECONDS (best effort: a broker that cannot take it is logged, never raised). Returns the
    ids of the passages read ahead, queued now or a moment ago ([] when there is nothing to read ahead)."""
    endpoint = endpoint or LLMEndpoint.objects.filter(is_default=True, active=True).first()
    if not _prefilled_locally(endpoint) or not question.strip():
        return []
    at = consultation_date_check(at)
    history = patient_history(patient, at)
    chunk_ids = [chunk.pk for chunk, _ in guidance_passages(question, history, current_pregnancy(history))]
    if not chunk_ids:
        return []
    key = f"prefill:{patient.pk}:{endpoint.pk}:{at.isoformat()}:{','.join(map(str, chunk_ids))}"
    kwargs = {"chunk_ids": chunk_ids, "at": at.isoformat(), "endpoint_id": endpoint.pk}
    _prefill_queue(key, (patient.pk,), kwargs)
    return chunk_ids


def _claim(guidance_id: int) -> GuidanceRequest | None:
    """Start (or, redelivered, start again) a request: a retried request starts clean."""
    return job_claim(
        GuidanceRequest,
        guidance_id,
        select_related=("patient", "endpoint"),
        text="",
        refined_prompt=None,
        refinement={},
        unsupported_claims=[],
    )


def guidance_request_run(*, guidance_id: int) -> GuidanceRequest:
    guidance = _claim(guidance_id)
    if guidance is None:
        return GuidanceRequest.objects.get(pk=guidance_id)
    timings = {}
    try:
        _run(guidance, timings)
    except (LLMError, GuidanceError, PromptError) as exc:
        _failed(guidance, str(exc), timings)
    except SoftTimeLimitExceeded:  # the worker's time limit for the task: recorded, then the task ends
        _failed(
            guidance,
            "Not finished in time: the answer took longer than this site allows. Ask again, or ask a "
            "curator for a faster endpoint.",
            timings,
        )
        raise
    except Exception as exc:
        _failed(guidance, f"Unexpected error: {exc.__class__.__name__}: {exc}", timings)
        raise
    return GuidanceRequest.objects.get(pk=guidance_id)


def _failed(guidance: GuidanceRequest, reason: str, timings: dict):
    job_claimed(guidance).update(timings=timings)
    job_fail(guidance, reason)


def _run(guidance: GuidanceRequest, timings: dict):
    patient, endpoint = guidance.patient, guidance.endpoint
    started = time.perf_counter()
    prompt, citations = guidance.prompt, guidance.citations
    if prompt is None:  # queued before prompts were built in the request, or its prompt since deleted
        prompt, passages, history, pregnancy = question_prompt(
            patient=patient,
            question=guidance.question,
            at=guidance.consultation_date,
            use_retrieval=guidance.use_retrieval,
            user=guidance.created_by,
            timings=timings,
        )
        citations = passage_citations(passages)
        job_claimed(guidance).update(prompt=prompt, citations=citations)
    else:
        timings.update(guidance.timings or {})  # retrieval and her prompt, timed in the request
        started -= (timings.get("retrieval_ms", 0) + timings.get("prompt_ms", 0)) / 1000  # the total counts them once
        history = patient_history(patient, guidance.consultation_date)
        pregnancy = current_pregnancy(history)

    step = time.perf_counter()
    used, refinement = prompt_refine(prompt=prompt, patient=patient) if guidance.use_refinement else (prompt, {})
    if refinement:
        timings["refine_ms"] = round((time.perf_counter() - step) * 1000, 1)
        job_claimed(guidance).update(refined_prompt=used if used.pk != prompt.pk else None, refinement=refinement)

    messages = _guard_identifiers(guidance_messages(used.text), endpoint, patient)

    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    buffer, last_flush = [], [time.monotonic()]

    def on_token(token: str):
        buffer.append(token)
        if time.monotonic() - last_flush[0] >= FLUSH_SECONDS:
            job_claimed(guidance).update(text="".join(buffer))
            last_flush[0] = time.monotonic()

    step = time.perf_counter()
    result = backend.generate(
        messages, max_tokens=endpoint.max_tokens, temperature=endpoint.temperature, on_token=on_token
    )
    timings["llm_ms"] = round((time.perf_counter() - step) * 1000, 1)

    step = time.perf_counter()
    warnings = [w.as_dict() for w in safety_warnings(history, pregnancy, result.text)]
    claims = guidance_claims(
        result.text, prompt.sections, history
    )  # checked against her record, not the refined wording
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.text)}
    citations = [{**c, "cited_in_text": c["n"] in cited} for c in citations]
    timings["safety_ms"] = round((time.perf_counter() - step) * 1000, 1)
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    job_finish(
        guidance,
        text=result.text,
        backend=endpoint.kind,
        model=result.model,
        usage=result.usage,
        latency_ms=result.latency_ms,
        ttft_ms=result.ttft_ms,
        citations=citations,
        warnings=warnings,
        timings=timings,
        unsupported_claims=claims,
    )


def _guard_identifiers(messages: list[dict], endpoint: LLMEndpoint, patient: pm.Patient) -> list[dict]:
    """An endpoint that may not receive identifiable data gets nothing that names her."""
    if endpoint.may_receive_identifiable_data:
        return messages
    identifiers = patient_identifiers(patient)
    cleaned = [{**m, "content": scrub(m["content"], identifiers)[0]} for m in messages]
    if any(leaks(m["content"], identifiers) for m in cleaned):
        raise GuidanceError(
            f"Refused: the prompt still carried an identifier and {endpoint.name} may not receive identifiable data."
        )
    return cleaned


CITATION_KEYS = ("n", "title", "source", "excerpt", "score", "cited_in_text")


def guidance_as_json(guidance: GuidanceRequest) -> dict:
    """Guidance as every surface gives it, one shape: the partner API's object and `ask --json` (docs/DESIGN.md's
    guidance, citations, backend, model, usage, latency_ms and prompt among its keys)."""
    sent = guidance.prompt_sent
    return {
        "id": guidance.pk,
        "patient": guidance.patient.external_id,
        "question": guidance.question,
        "consultation_date": _iso(guidance.consultation_date),
        "status": guidance.status,
        "endpoint": guidance.endpoint.name,
        "use_retrieval": guidance.use_retrieval,
        "backend": guidance.backend or guidance.endpoint.kind,
        "model": guidance.model,
        "prompt": sent.text if sent else "",
        "initial_prompt": guidance.prompt.text if guidance.prompt else "",
        "refined": guidance.refined_prompt_id is not None,
        "refinement": guidance.refinement,
        "guidance": guidance.text,
        "citations": [{key: c.get(key) for key in CITATION_KEYS} for c in guidance.citations],
        "warnings": guidance.warnings,
        "unsupported_claims": guidance.unsupported_claims,
        "usage": guidance.usage,
        "latency_ms": guidance.latency_ms,
        "error": guidance.error,
        "notice": NOTICE,
        "created_at": _iso(guidance.created_at),
        "finished_at": _iso(guidance.finished_at),
    }


def _iso(value) -> str | None:
    """A date, or a UTC time as REST APIs write it (2025-05-02T09:30:00.123456Z)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


# --- comparison runner ----------------------------------------------------------------------------


def comparison_run_check(
    *,
    organisation: pm.Organisation,
    patient_ids: list[str],
    questions: list[str],
    endpoint_names: list[str] | None = None,
) -> list[str]:
    """What a comparison needs before it starts (GuidanceError otherwise); returns the endpoints' names."""
    names = endpoint_names or list(LLMEndpoint.objects.filter(active=True).values_list("name", flat=True))
    for name in names:
        endpoint_named(name)
    missing = set(patient_ids) - set(
        pm.Patient.objects.filter(organisation=organisation, external_id__in=patient_ids).values_list(
            "external_id", flat=True
        )
    )
    if missing:
        raise GuidanceError(f"Not patients of {organisation.slug}: {', '.join(sorted(missing))}")
    if not questions or not patient_ids:
        raise GuidanceError("A comparison needs at least one patient and one question.")
    return names


def comparison_run_create(
    *,
    organisation: pm.Organisation,
    patient_ids: list[str],
    questions: list[str],
    endpoint_names: list[str] | None = None,
    user=None,
    run_inline: bool = False,
) -> ComparisonRun:
    names = comparison_run_check(
        organisation=organisation, patient_ids=patient_ids, questions=questions, endpoint_names=endpoint_names
    )
    run = ComparisonRun.objects.create(
        organisation=organisation, patient_ids=patient_ids, questions=questions, endpoint_names=names, created_by=user
    )
    if run_inline:
        comparison_run_execute(run_id=run.pk)
        run.refresh_from_db()
    else:
        transaction.on_commit(lambda: run_comparison_task.delay(run.pk))
    return run


def comparison_run_execute(*, run_id: int, on_progress=None) -> ComparisonRun:
    run = job_claim(ComparisonRun, run_id)  # redelivered, it goes on: the requests it already made are reused
    if run is None:
        return ComparisonRun.objects.get(pk=run_id)
    patients = {
        p.external_id: p
        for p in pm.Patient.objects.filter(organisation=run.organisation, external_id__in=run.patient_ids)
    }
    combos = [
        (pid, q, name, rag)
        for pid in run.patient_ids
        for q in run.questions
        for name in run.endpoint_names
        for rag in (True, False)
    ]
    try:
        for done, (pid, question, name, rag) in enumerate(combos, 1):
            key = f"comparison-{run.pk}-{done}"
            guidance = guidance_request_create(
                patient=patients[pid],
                question=question,
                endpoint=endpoint_named(name),
                use_retrieval=rag,
                idempotency_key=key,
                run_inline=True,
                user=run.created_by,
            )
            ComparisonResult.objects.get_or_create(
                run=run, guidance=guidance, defaults={"endpoint_name": name, "use_retrieval": rag}
            )
            percent = int(done * 100 / len(combos))
            message = f"{done}/{len(combos)}: {name}, retrieval {'on' if rag else 'off'}"
            if not job_progress(run, percent, message):
                return ComparisonRun.objects.get(pk=run.pk)  # swept meanwhile: it stays failed
            if on_progress:
                on_progress(percent, message)
        job_finish(run, table=comparison_table(run))
    except Exception as exc:
        job_fail(run, f"{exc.__class__.__name__}: {exc}")
        raise
    return ComparisonRun.objects.get(pk=run.pk)


def comparison_table(run: ComparisonRun) -> list[dict]:
    rows = []
    for name in run.endpoint_names:
        endpoint = LLMEndpoint.objects.get(name=name)
        for rag in (True, False):
            results = [
                r.guidance for r in run.results.filter(endpoint_name=name, use_retrieval=rag).select_related("guidance")
            ]
            done = [g for g in results if g.status == pm.JobStatus.DONE]
            rows.append(
                {
                    "endpoint": name,
                    "openness": endpoint.openness,
                    "retrieval": rag,
                    "requests": len(results),
                    "failed": len(results) - len(done),
                    "mean_latency_ms": round(sum(g.latency_ms or 0 for g in done) / len(done)) if done else None,
                    "mean_completion_tokens": round(
                        sum((g.usage or {}).get("completion_tokens") or 0 for g in done) / len(done), 1
                    )
                    if done
                    else None,
                    "citation_rate": round(
                        sum(1 for g in done if any(c.get("cited_in_text") for c in g.citations)) / len(done), 3
                    )
                    if done
                    else None,
                    "safety_warnings": sum(len(g.warnings) for g in done),
                }
            )
    return rows
