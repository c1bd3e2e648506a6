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
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from patients import models as pm
from prompting.jobs import job_claimed
from prompting.knowledge import knowledge_search
from prompting.llm import LLMError, build_backend
from prompting.models import ComparisonResult, ComparisonRun, GuidanceRequest, LLMEndpoint
from prompting.pmlm.deidentify import leaks, scrub
from prompting.pmlm.grounding import guidance_claims
from prompting.pmlm.risk import risk_flags
from prompting.pmlm.safety import NOTICE, safety_warnings
from prompting.pmlm.state import current_pregnancy
from prompting.selectors import patient_history, patient_identifiers
from prompting.services import PromptError, consultation_date_check, count_tokens, prompt_build, prompt_prefix

SYSTEM_MESSAGE = ("You are a careful obstetrics and gynaecology decision-support assistant. Answer the clinician's question "
                  "for this patient using only the context given. Cite guidance sources as [1], [2].")
ANSWER_INSTRUCTION = "Answer for the clinician in at most 200 words, as short bullet points."
RETRIEVED_PASSAGES = 3
logger = logging.getLogger(__name__)
FLUSH_SECONDS = 0.5


class GuidanceError(ValueError):
    pass


class GuidanceBusy(GuidanceError):
    """Too much guidance is already waiting for this account or organisation: try again later (API: 429)."""

    retry_after = 30  # seconds: about one guidance answer


def _refuse_when_busy(patient: pm.Patient, user):
    """Queued or running requests are capped per account (an API token's, or a clinician's) and per organisation.
    Call inside the transaction that creates the request, after locking the organisation's row."""
    pending = GuidanceRequest.objects.filter(patient__organisation_id=patient.organisation_id,
                                             status__in=(pm.JobStatus.QUEUED, pm.JobStatus.RUNNING))
    limit = settings.PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION
    if pending.count() >= limit:
        raise GuidanceBusy(f"Your organisation already has {limit} guidance requests waiting for an answer: "
                           "try again when some have finished.")
    limit = settings.PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT
    if user is not None and user.is_authenticated and pending.filter(created_by=user).count() >= limit:
        raise GuidanceBusy(f"You already have {limit} guidance requests waiting for an answer: "
                           "try again when some have finished.")


def endpoint_default() -> LLMEndpoint:
    endpoint = LLMEndpoint.objects.filter(is_default=True, active=True).first()
    if endpoint is None:
        raise GuidanceError("No default LLM endpoint is configured: a site administrator marks one as default in the admin.")
    return endpoint


def endpoint_named(name: str) -> LLMEndpoint:
    endpoint = LLMEndpoint.objects.filter(name=name, active=True).first()
    if endpoint is None:
        names = ", ".join(LLMEndpoint.objects.filter(active=True).values_list("name", flat=True))
        raise GuidanceError(f"No active LLM endpoint named {name!r} (configured: {names or 'none'}).")
    return endpoint


def guidance_request_create(*, patient: pm.Patient, question: str, at: date | None = None, endpoint: LLMEndpoint | None = None,
                            use_retrieval: bool = True, use_refinement: bool = True, user=None, idempotency_key: str = "",
                            run_inline: bool = False) -> GuidanceRequest:
    question = (question or "").strip()
    if not question:
        raise GuidanceError("Type a question.")
    if len(question) > 2000:
        raise GuidanceError("The question is longer than 2000 characters.")
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
    # Her prompt is built here, in the request (tens of milliseconds), and shown at once: only the LLM waits for a worker.
    timings = {}
    try:
        prompt, passages, _, _ = question_prompt(patient=patient, question=question, at=at, use_retrieval=use_retrieval,
                                                 user=user, timings=timings)
    except PromptError as exc:
        raise GuidanceError(str(exc)) from None
    try:
        with transaction.atomic():
            if not run_inline:  # queued work is capped; inline work is done by the caller itself
                pm.Organisation.objects.select_for_update().filter(pk=patient.organisation_id).first()
                _refuse_when_busy(patient, user)
            guidance = GuidanceRequest.objects.create(
                patient=patient, question=question, consultation_date=at, endpoint=endpoint,
                use_retrieval=use_retrieval, use_refinement=use_refinement, idempotency_key=idempotency_key,
                prompt=prompt, citations=_citations(passages), timings=timings,
                created_by=user if user is not None and user.is_authenticated else None)
            audit_record(AuditAction.REQUEST_GUIDANCE, obj=guidance, organisation_id=patient.organisation_id,
                         details={"patient": patient.pk, "endpoint": endpoint.name, "retrieval": use_retrieval})
            if not run_inline:
                from prompting.tasks import run_guidance_task

                transaction.on_commit(lambda: run_guidance_task.delay(guidance.pk))
    except IntegrityError:  # the same key at the same moment
        return GuidanceRequest.objects.get(patient=patient, idempotency_key=idempotency_key)
    if run_inline:
        guidance_request_run(guidance_id=guidance.pk)
        guidance.refresh_from_db()
    return guidance


def guidance_prefill(*, patient: pm.Patient, at: date | None = None, endpoint: LLMEndpoint | None = None) -> int:
    """Have the endpoint read the start of her prompt (instructions, her record, her peers) before she is asked
    about, so that a question costs only its guidance sources and itself. Only an in-process model keeps what
    it read; for other endpoints nothing is done. Returns the prompt tokens read."""
    endpoint = endpoint or endpoint_default()
    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    prefill = getattr(backend, "prefill", None)
    if prefill is None:
        return 0
    messages = [{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": prompt_prefix(patient=patient, at=at)}]
    return prefill(_guard_identifiers(messages, endpoint, patient))


def guidance_prefill_soon(*, patient: pm.Patient):
    """When a clinician opens her record: prefill on the interactive lane, dropped if no worker takes it within
    PMLM_PREFILL_EXPIRES_SECONDS (a question asked by then reads the prefix itself). Best effort: once per patient
    in that time, only for an in-process default model, and a broker or cache that fails never fails the page."""
    if not settings.PMLM_PREFILL_ON_OPEN or settings.CELERY_TASK_ALWAYS_EAGER:
        return
    endpoint = LLMEndpoint.objects.filter(is_default=True, active=True).only("kind").first()
    if endpoint is None or endpoint.kind != LLMEndpoint.Kind.LLAMACPP:
        return
    from prompting.tasks import prefill_guidance_task

    def queue():
        expires = settings.PMLM_PREFILL_EXPIRES_SECONDS
        try:
            if cache.add(f"prefill:{patient.pk}", 1, timeout=expires):  # not if queued a moment ago
                prefill_guidance_task.apply_async((patient.pk,), expires=expires, retry=False)
        except Exception:  # noqa: BLE001 — the question will read the prefix itself
            logger.warning("Prefill for patient %s not queued", patient.pk, exc_info=True)

    transaction.on_commit(queue)


def _claim(guidance_id: int) -> GuidanceRequest | None:
    """Start (or, redelivered, start again) a request; its `started_at` is this claim's token (prompting.jobs)."""
    with transaction.atomic():
        guidance = GuidanceRequest.objects.select_for_update().select_related("patient", "endpoint").get(pk=guidance_id)
        if guidance.status in pm.JobStatus.finished():
            return None
        guidance.status, guidance.started_at, guidance.text, guidance.error = pm.JobStatus.RUNNING, timezone.now(), "", ""
        guidance.refined_prompt, guidance.refinement, guidance.unsupported_claims = None, {}, []  # a retried request starts clean
        guidance.save(update_fields=["status", "started_at", "text", "error", "refined_prompt", "refinement", "unsupported_claims"])
        return guidance


def _ours(guidance: GuidanceRequest):
    """Its row while this claim still runs it: the sweep, or a redelivered task's claim, takes it away."""
    return job_claimed(GuidanceRequest, guidance.pk, guidance.started_at)


def guidance_request_run(*, guidance_id: int) -> GuidanceRequest:
    guidance = _claim(guidance_id)
    if guidance is None:
        return GuidanceRequest.objects.get(pk=guidance_id)
    timings = {}
    try:
        _run(guidance, timings)
    except (LLMError, GuidanceError, PromptError) as exc:
        _ours(guidance).update(status=pm.JobStatus.FAILED, error=str(exc), finished_at=timezone.now(), timings=timings)
    except SoftTimeLimitExceeded:  # the worker's time limit for the task: recorded, then the task ends
        _ours(guidance).update(status=pm.JobStatus.FAILED, finished_at=timezone.now(), timings=timings, error=(
            "Not finished in time: the answer took longer than this site allows. Ask again, or ask a curator "
            "for a faster endpoint."))
        raise
    except Exception as exc:
        _ours(guidance).update(status=pm.JobStatus.FAILED, error=f"Unexpected error: {exc.__class__.__name__}: {exc}"[:2000],
                               finished_at=timezone.now(), timings=timings)
        raise
    return GuidanceRequest.objects.get(pk=guidance_id)


def guidance_messages(prompt_text: str) -> list[dict]:
    """What the LLM receives for a prompt: the same for guidance requests and for scoring refinements."""
    return [{"role": "system", "content": SYSTEM_MESSAGE},
            {"role": "user", "content": f"{prompt_text}\n\n{ANSWER_INSTRUCTION}"}]


def question_prompt(*, patient: pm.Patient, question: str, at: date, use_retrieval: bool = True, user=None,
                    timings: dict | None = None):
    """The initial personalised prompt for a question, grounded in retrieved guidance when asked.

    Returns (prompt, passages, history, pregnancy); guidance requests and refinement runs share it."""
    timings = timings if timings is not None else {}
    started = time.perf_counter()
    history = patient_history(patient, at)  # read once: retrieval and safety share it
    pregnancy = current_pregnancy(history)
    passages = []
    if use_retrieval:
        passages = guidance_passages(question, history, pregnancy)
        timings["retrieval_ms"] = round((time.perf_counter() - started) * 1000, 1)
    step = time.perf_counter()
    prompt = prompt_build(patient=patient, question=question, at=at, user=user,
                          knowledge=[passage_text(chunk) for chunk, _ in passages])
    timings["prompt_ms"] = round((time.perf_counter() - step) * 1000, 1)
    return prompt, passages, history, pregnancy


def _run(guidance: GuidanceRequest, timings: dict):
    from prompting.refinement import prompt_refine

    patient, endpoint = guidance.patient, guidance.endpoint
    started = time.perf_counter()
    prompt, citations = guidance.prompt, guidance.citations
    if prompt is None:  # queued before prompts were built in the request, or its prompt since deleted
        prompt, passages, history, pregnancy = question_prompt(
            patient=patient, question=guidance.question, at=guidance.consultation_date, use_retrieval=guidance.use_retrieval,
            user=guidance.created_by, timings=timings)
        citations = _citations(passages)
        _ours(guidance).update(prompt=prompt, citations=citations)
    else:
        timings.update(guidance.timings or {})  # retrieval and her prompt, timed in the request
        started -= (timings.get("retrieval_ms", 0) + timings.get("prompt_ms", 0)) / 1000  # the total counts them once
        history = patient_history(patient, guidance.consultation_date)
        pregnancy = current_pregnancy(history)

    step = time.perf_counter()
    used, refinement = prompt_refine(prompt=prompt, patient=patient) if guidance.use_refinement else (prompt, {})
    if refinement:
        timings["refine_ms"] = round((time.perf_counter() - step) * 1000, 1)
        _ours(guidance).update(refined_prompt=used if used.pk != prompt.pk else None, refinement=refinement)

    messages = _guard_identifiers(guidance_messages(used.text), endpoint, patient)

    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    buffer, last_flush = [], [time.monotonic()]

    def on_token(token: str):
        buffer.append(token)
        if time.monotonic() - last_flush[0] >= FLUSH_SECONDS:
            _ours(guidance).update(text="".join(buffer))
            last_flush[0] = time.monotonic()

    step = time.perf_counter()
    result = backend.generate(messages, max_tokens=endpoint.max_tokens, temperature=endpoint.temperature, on_token=on_token)
    timings["llm_ms"] = round((time.perf_counter() - step) * 1000, 1)

    step = time.perf_counter()
    warnings = [w.as_dict() for w in safety_warnings(history, pregnancy, result.text)]
    claims = guidance_claims(result.text, prompt.sections, history)  # checked against her record, not the refined wording
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", result.text)}
    citations = [{**c, "cited_in_text": c["n"] in cited} for c in citations]
    timings["safety_ms"] = round((time.perf_counter() - step) * 1000, 1)
    timings["total_ms"] = round((time.perf_counter() - started) * 1000, 1)
    _ours(guidance).update(
        status=pm.JobStatus.DONE, text=result.text, backend=endpoint.kind, model=result.model, usage=result.usage,
        latency_ms=result.latency_ms, ttft_ms=result.ttft_ms, citations=citations, warnings=warnings, timings=timings,
        unsupported_claims=claims, finished_at=timezone.now())


def _citations(passages) -> list[dict]:
    """The guidance sources her prompt carries, numbered as the prompt numbers them."""
    return [{"n": n, "chunk": chunk.pk, "document": chunk.document_id, "title": chunk.document.title,
             "source": chunk.document.source, "excerpt": chunk.text[:400], "score": round(score, 3), "cited_in_text": False}
            for n, (chunk, score) in enumerate(passages, 1)]


def guidance_passages(question: str, history, pregnancy) -> list:
    """The guidance passages retrieved for a question about her: (chunk, score), best first.

    The query carries her risk flags, so a question about a hypertensive woman finds the
    hypertension guidance."""
    flags = " ".join(f.label for f in risk_flags(history, pregnancy))
    return knowledge_search(f"{question} {flags}", k=RETRIEVED_PASSAGES)


def passage_text(chunk) -> str:
    return f"{chunk.text} (Source: {chunk.document.title})"


def _guard_identifiers(messages: list[dict], endpoint: LLMEndpoint, patient: pm.Patient) -> list[dict]:
    """An endpoint that may not receive identifiable data gets nothing that names her."""
    if endpoint.may_receive_identifiable_data:
        return messages
    identifiers = patient_identifiers(patient)
    cleaned = [{**m, "content": scrub(m["content"], identifiers)[0]} for m in messages]
    if any(leaks(m["content"], identifiers) for m in cleaned):
        raise GuidanceError(f"Refused: the prompt still carried an identifier and {endpoint.name} may not receive identifiable data.")
    return cleaned


def guidance_as_json(guidance: GuidanceRequest) -> dict:
    """The `ask --json` object (DESIGN.md), with status, warnings and the decision-support notice."""
    return {
        "status": guidance.status,
        "guidance": guidance.text,
        "citations": guidance.citations,
        "backend": guidance.backend or guidance.endpoint.kind,
        "endpoint": guidance.endpoint.name,
        "model": guidance.model,
        "usage": guidance.usage,
        "latency_ms": guidance.latency_ms,
        "prompt": _prompt_sent(guidance),
        "initial_prompt": guidance.prompt.text if guidance.prompt else "",
        "refinement": guidance.refinement,
        "warnings": guidance.warnings,
        "unsupported_claims": guidance.unsupported_claims,
        "notice": NOTICE,
        "error": guidance.error,
    }


def _prompt_sent(guidance: GuidanceRequest) -> str:
    if guidance.refined_prompt_id:
        return guidance.refined_prompt.text
    return guidance.prompt.text if guidance.prompt else ""


# --- comparison runner ----------------------------------------------------------------------------


def comparison_run_create(*, organisation: pm.Organisation, patient_ids: list[str], questions: list[str],
                          endpoint_names: list[str] | None = None, user=None, run_inline: bool = False) -> ComparisonRun:
    names = endpoint_names or list(LLMEndpoint.objects.filter(active=True).values_list("name", flat=True))
    for name in names:
        endpoint_named(name)
    missing = set(patient_ids) - set(pm.Patient.objects.filter(organisation=organisation, external_id__in=patient_ids)
                                     .values_list("external_id", flat=True))
    if missing:
        raise GuidanceError(f"Not patients of {organisation.slug}: {', '.join(sorted(missing))}")
    if not questions or not patient_ids:
        raise GuidanceError("A comparison needs at least one patient and one question.")
    run = ComparisonRun.objects.create(organisation=organisation, patient_ids=patient_ids, questions=questions,
                                       endpoint_names=names, created_by=user)
    if run_inline:
        comparison_run_execute(run_id=run.pk)
        run.refresh_from_db()
    else:
        from prompting.tasks import run_comparison_task

        transaction.on_commit(lambda: run_comparison_task.delay(run.pk))
    return run


def _claim_comparison(run_id: int) -> ComparisonRun | None:
    with transaction.atomic():
        run = ComparisonRun.objects.select_for_update().get(pk=run_id)
        if run.status in pm.JobStatus.finished():  # done, or failed by the sweep: a redelivered task leaves it
            return None
        run.status = pm.JobStatus.RUNNING  # redelivered, it goes on: the requests it already made are reused
        run.save(update_fields=["status"])
        return run


def comparison_run_execute(*, run_id: int, on_progress=None) -> ComparisonRun:
    run = _claim_comparison(run_id)
    if run is None:
        return ComparisonRun.objects.get(pk=run_id)
    ours = job_claimed(ComparisonRun, run.pk)  # no start time of its own to tell two claims apart (report)
    patients = {p.external_id: p for p in pm.Patient.objects.filter(organisation=run.organisation, external_id__in=run.patient_ids)}
    combos = [(pid, q, name, rag) for pid in run.patient_ids for q in run.questions for name in run.endpoint_names for rag in (True, False)]
    try:
        for done, (pid, question, name, rag) in enumerate(combos, 1):
            key = f"comparison-{run.pk}-{done}"
            guidance = guidance_request_create(patient=patients[pid], question=question, endpoint=endpoint_named(name),
                                               use_retrieval=rag, idempotency_key=key, run_inline=True, user=run.created_by)
            ComparisonResult.objects.get_or_create(run=run, guidance=guidance, defaults={"endpoint_name": name, "use_retrieval": rag})
            percent = int(done * 100 / len(combos))
            message = f"{done}/{len(combos)}: {name}, retrieval {'on' if rag else 'off'}"
            if not ours.update(progress=percent, message=message):
                return ComparisonRun.objects.get(pk=run.pk)  # swept meanwhile: it stays failed
            if on_progress:
                on_progress(percent, message)
        run.refresh_from_db()
        ours.update(table=comparison_table(run), status=pm.JobStatus.DONE, finished_at=timezone.now())
    except Exception as exc:
        ours.update(status=pm.JobStatus.FAILED, finished_at=timezone.now(),
                    message=f"Failed: {exc.__class__.__name__}: {exc}"[:500])
        raise
    return ComparisonRun.objects.get(pk=run.pk)


def comparison_table(run: ComparisonRun) -> list[dict]:
    rows = []
    for name in run.endpoint_names:
        endpoint = LLMEndpoint.objects.get(name=name)
        for rag in (True, False):
            results = [r.guidance for r in run.results.filter(endpoint_name=name, use_retrieval=rag).select_related("guidance")]
            done = [g for g in results if g.status == pm.JobStatus.DONE]
            rows.append({
                "endpoint": name, "openness": endpoint.openness, "retrieval": rag, "requests": len(results),
                "failed": len(results) - len(done),
                "mean_latency_ms": round(sum(g.latency_ms or 0 for g in done) / len(done)) if done else None,
                "mean_completion_tokens": round(sum((g.usage or {}).get("completion_tokens") or 0 for g in done) / len(done), 1) if done else None,
                "citation_rate": round(sum(1 for g in done if any(c.get("cited_in_text") for c in g.citations)) / len(done), 3) if done else None,
                "safety_warnings": sum(len(g.warnings) for g in done),
            })
    return rows
