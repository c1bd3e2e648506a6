"""Background work on the clinical record. Tasks take ids, are idempotent and record status.

Tasks import the services they call inside their bodies; services import tasks at the top
(see prompting/tasks.py)."""

from celery import shared_task


@shared_task(acks_late=True)
def run_import_job(job_id: int) -> str:
    from patients.services import import_job_run

    return import_job_run(job_id=job_id)
