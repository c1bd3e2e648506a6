"""Background work of the method. Tasks take ids, are idempotent and record progress on a row.

Tasks import the services they call inside their bodies, and services import tasks at the top
(the HackSoft Django Styleguide's Celery recipe): services queue tasks, so this way round no
module imports one that imports it back.
"""

from celery import shared_task


@shared_task(acks_late=True)
def train_peer_model_task(peer_model_id: int) -> str:
    from prompting.peer_models import peer_model_train

    return peer_model_train(peer_model_id=peer_model_id).status


@shared_task(acks_late=True)
def run_guidance_task(guidance_id: int) -> str:
    from prompting.guidance import guidance_request_run

    return guidance_request_run(guidance_id=guidance_id).status


@shared_task
def prefill_guidance_task(
    patient_id: int, chunk_ids: list[int] | None = None, at: str | None = None, endpoint_id: int | None = None
) -> int:
    """Best effort: a lost prefill costs nothing but the time it would have saved. Her workspace opened: her
    prompt's start; a question being typed: through the guidance sources `chunk_ids` (in the order retrieved; one
    deleted since is left out), read for the consultation date `at` on the endpoint `endpoint_id`."""
    from datetime import date

    from patients.models import Patient
    from prompting.consultation import passage_texts
    from prompting.guidance import GuidanceError, guidance_prefill
    from prompting.llm import LLMError
    from prompting.models import KnowledgeChunk, LLMEndpoint
    from prompting.prompts import PromptError

    patient = Patient.objects.filter(pk=patient_id).first()
    endpoint = LLMEndpoint.objects.filter(pk=endpoint_id, active=True).first() if endpoint_id else None
    if patient is None or (endpoint_id and endpoint is None):
        return 0
    knowledge = None
    if chunk_ids:
        chunks = KnowledgeChunk.objects.filter(pk__in=chunk_ids).select_related("document").in_bulk()
        knowledge = passage_texts(chunks[pk] for pk in chunk_ids if pk in chunks)
    try:
        return guidance_prefill(
            patient=patient, at=date.fromisoformat(at) if at else None, endpoint=endpoint, knowledge=knowledge
        )
    except (
        GuidanceError,
        PromptError,
        LLMError,
    ):  # no default endpoint or template, a prompt too long: nothing to reuse
        return 0


@shared_task(acks_late=True)
def run_comparison_task(run_id: int) -> str:
    from prompting.guidance import comparison_run_execute

    return comparison_run_execute(run_id=run_id).status


@shared_task(acks_late=True)
def index_knowledge_document_task(document_id: int) -> int:
    from prompting.knowledge import knowledge_document_index
    from prompting.models import KnowledgeDocument

    return knowledge_document_index(document=KnowledgeDocument.objects.get(pk=document_id))


@shared_task(acks_late=True)
def run_refinement_task(run_id: int) -> str:
    from prompting.refinement import refinement_run_execute

    return refinement_run_execute(run_id=run_id).status


@shared_task
def sweep_stuck_jobs_task() -> dict:
    from prompting.sweep import sweep_stuck_jobs

    return sweep_stuck_jobs()


@shared_task(acks_late=True)
def run_evaluation_task(run_id: int) -> str:
    from prompting.evaluation_runs import evaluation_run_execute

    return evaluation_run_execute(run_id=run_id).status
