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
def prefill_guidance_task(patient_id: int) -> int:
    """Best effort: a lost prefill costs nothing but the time it would have saved."""
    from patients.models import Patient
    from prompting.guidance import GuidanceError, guidance_prefill
    from prompting.llm import LLMError
    from prompting.prompts import PromptError

    patient = Patient.objects.filter(pk=patient_id).first()
    try:
        return guidance_prefill(patient=patient) if patient is not None else 0
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
