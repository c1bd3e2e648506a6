"""What every job a worker claims shares: cancelling one, and finishing it only while it is still ours.

A claim sets the job running (and, where the job keeps one, its `started_at`) under a row lock. The
sweep may fail the job meanwhile, a curator may cancel it, and a redelivered task may claim it again:
the worker that started it then finishes nothing, so a swept job stays failed with the sweep's reason.
"""

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


def job_claimed(model, pk: int, started_at=None):
    """The job's row while it is still this claim's: running and, for a job that keeps one, started when this claim
    started it (`started_at` is the claim's token; None for jobs without one, where running is all we can check)."""
    rows = model.objects.filter(pk=pk, status=JobStatus.RUNNING)
    return rows if started_at is None else rows.filter(started_at=started_at)


def job_finish(model, pk: int, started_at=None, **fields) -> bool:
    """Write how a job ended, only if it is still this claim's; whether it was."""
    return job_claimed(model, pk, started_at).update(**fields) > 0


def job_fail(model, pk: int, reason: str, *, started_at=None) -> bool:
    """Record why a job this claim runs failed: the whole reason for curators, its start on the status line."""
    return job_finish(model, pk, started_at, status=JobStatus.FAILED, error=reason[:4000],
                      message=f"Failed: {reason}"[:500], finished_at=timezone.now())
