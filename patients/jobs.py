"""One lifecycle for every kind of job a worker runs (patients.models.BackgroundJob): claim, progress,
cancel, fail, finish. The sweep of stuck jobs is prompting/sweep.py.

A claim sets the job running and stamps `started_at` under a row lock; that time is the claim's token.
The sweep may fail the job meanwhile, a curator may cancel it, and a redelivered task may claim it
again: every later write of the worker that started it goes through `job_claimed`, so it lands only
while the job is still that claim's, and a swept job stays failed with the sweep's reason.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from patients.models import BackgroundJob, JobStatus

MESSAGE_CHARS, ERROR_CHARS = 500, 4000


def job_claim(
    model: type[BackgroundJob], pk: int, *, select_related: tuple[str, ...] = (), **fresh
) -> BackgroundJob | None:
    """Start (or, redelivered, start again) a job: running, started now, its error cleared and `fresh` set (what a
    new start resets). None when it has finished: done, cancelled, or failed by the sweep, it is left alone."""
    with transaction.atomic():
        job = model.objects.select_for_update().select_related(*select_related).get(pk=pk)
        if job.is_finished:
            return None
        values = {"status": JobStatus.RUNNING, "started_at": timezone.now(), "error": "", **fresh}
        for name, value in values.items():
            setattr(job, name, value)
        job.save(update_fields=list(values))
        return job


def job_claimed(job: BackgroundJob):
    """The job's row while it is still this claim's: running, and started when this claim started it."""
    return type(job).objects.filter(pk=job.pk, status=JobStatus.RUNNING, started_at=job.started_at)


def job_progress(job: BackgroundJob, percent: int, message: str) -> bool:
    """Record how far it is (never 100 before it finishes); whether it is still this claim's."""
    return job_claimed(job).update(progress=min(percent, 99), message=message[:MESSAGE_CHARS]) > 0


def job_should_stop(job: BackgroundJob) -> bool:
    """Cancelled by a curator, or no longer this claim's: the worker stops between units of work."""
    return not job_claimed(job).filter(cancel_requested=False).exists()


def job_finish(job: BackgroundJob, **fields) -> bool:
    """Done, with what it produced (`fields`), only if it is still this claim's; whether it was."""
    values = {"status": JobStatus.DONE, "progress": 100, "finished_at": timezone.now(), **fields}
    return job_claimed(job).update(**values) > 0


def job_fail(job: BackgroundJob, reason: str) -> bool:
    """Why a job this claim runs failed: the whole reason for curators, its start on the status line."""
    return (
        job_claimed(job).update(
            status=JobStatus.FAILED,
            error=reason[:ERROR_CHARS],
            message=f"Failed: {reason}"[:MESSAGE_CHARS],
            finished_at=timezone.now(),
        )
        > 0
    )


def job_stopped(job: BackgroundJob, message: str) -> bool:
    """A running job that saw its cancel request ends cancelled, saying how far it got."""
    return (
        job_claimed(job).update(status=JobStatus.CANCELLED, message=message[:MESSAGE_CHARS], finished_at=timezone.now())
        > 0
    )


def job_cancel(model: type[BackgroundJob], pk: int, *, while_running: str) -> BackgroundJob:
    """A queued job stops at once; a running one is asked to stop (its worker checks between units of work)."""
    with transaction.atomic():
        job = model.objects.select_for_update().get(pk=pk)
        if job.is_finished:
            return job
        job.cancel_requested = True
        if job.is_queued:
            job.status, job.message, job.finished_at = (
                JobStatus.CANCELLED,
                "Cancelled before it started",
                timezone.now(),
            )
        else:
            job.message = while_running
        job.save(update_fields=["cancel_requested", "status", "message", "finished_at"])
        return job
