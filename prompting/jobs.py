"""What every long job of the method shares: cancelling one."""

from django.db import transaction
from django.utils import timezone

from patients.models import JobStatus


def job_cancel(model, pk: int, *, while_running: str):
    """A queued job stops at once; a running one is asked to stop (its worker checks between units of work)."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.status in JobStatus.finished():
            return job
        job.cancel_requested = True
        if job.status == JobStatus.QUEUED:
            job.status, job.message, job.finished_at = JobStatus.CANCELLED, "Cancelled before it started", timezone.now()
        else:
            job.message = while_running
        job.save(update_fields=["cancel_requested", "status", "message", "finished_at"])
        return job


def job_fail(model, pk: int, reason: str):
    """Record why a job failed: the whole reason for curators, its start on the status line."""
    model.objects.filter(pk=pk).update(status=JobStatus.FAILED, error=reason[:4000], message=f"Failed: {reason}"[:500],
                                       finished_at=timezone.now())
