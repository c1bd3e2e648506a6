"""Background work on the clinical record. Tasks take ids, are idempotent and record status."""

from celery import shared_task

from patients.services import import_job_run


@shared_task(acks_late=True)
def run_import_job(job_id: int) -> str:
    return import_job_run(job_id=job_id)
