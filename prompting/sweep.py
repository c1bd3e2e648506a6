"""Fail jobs that have stopped moving, with the reason, so no page or partner waits forever.

A job is stuck when it is unfinished its limit (settings.PMLM_JOB_LIMITS_SECONDS) after it started or,
never started, after it was created. Beat runs this every PMLM_SWEEP_INTERVAL seconds. A job's worker
finishes it only while it is still running (prompting.jobs), so a swept job stays failed."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from patients.models import ImportJob, JobStatus
from prompting.models import ComparisonRun, EvaluationRun, GuidanceRequest, PeerModel, RefinementRun

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


def _reason(seconds: int) -> str:
    within = f"{seconds // 60} minutes" if seconds >= 600 else f"{seconds} seconds"
    return f"Stopped by the sweep: not finished within {within} (its worker was probably lost). Start it again."


def _stuck(rows, seconds: int, now, *, started: bool):
    since = now - timedelta(seconds=seconds)
    rows = rows.filter(status__in=UNFINISHED, created_at__lt=since)
    return rows.filter(Q(started_at__isnull=True) | Q(started_at__lt=since)) if started else rows


def sweep_stuck_jobs(*, now=None) -> dict[str, int]:
    now = now or timezone.now()
    limits = settings.PMLM_JOB_LIMITS_SECONDS
    swept = {}
    swept["guidance"] = 0
    # A comparison asks for its guidance inline, in its batch task: those wait as long as the comparison may.
    in_a_comparison = Q(idempotency_key__startswith="comparison-")  # comparison_run_execute's keys
    for rows, seconds in ((GuidanceRequest.objects.exclude(in_a_comparison), limits["guidance"]),
                          (GuidanceRequest.objects.filter(in_a_comparison), limits["comparison"])):
        swept["guidance"] += _stuck(rows, seconds, now, started=True).update(
            status=JobStatus.FAILED, error=_reason(seconds), finished_at=now)
    for key, model in (("import", ImportJob), ("peer_model", PeerModel), ("comparison", ComparisonRun)):
        seconds = limits[key]  # these keep no start time: their wait in the queue counts too
        swept[key] = _stuck(model.objects.all(), seconds, now, started=False).update(
            status=JobStatus.FAILED, message=_reason(seconds), finished_at=now)
    for key, model in (("refinement", RefinementRun), ("evaluation", EvaluationRun)):
        seconds = limits[key]
        swept[key] = _stuck(model.objects.all(), seconds, now, started=True).update(
            status=JobStatus.FAILED, error=_reason(seconds), message=_reason(seconds), finished_at=now)
    return swept
