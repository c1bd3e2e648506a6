"""Fail jobs that have stopped moving, with the reason, so no page or partner waits forever.

A job is stuck when it is unfinished its limit (settings.PMLM_JOB_LIMITS_SECONDS) after its current
claim started it or, never started, after it was created. Beat runs this every PMLM_SWEEP_INTERVAL
seconds. A job's worker finishes it only while it is still that claim's (patients/jobs.py), so a swept
job stays failed."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from patients.models import ImportJob, JobStatus
from prompting.models import ComparisonRun, EvaluationRun, GuidanceRequest, PeerModel, RefinementRun

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)
# A comparison asks for its guidance inline, in its batch task: those wait as long as the comparison may.
IN_A_COMPARISON = Q(idempotency_key__startswith="comparison-")  # comparison_run_execute's keys


def _reason(seconds: int) -> str:
    within = f"{seconds // 60} minutes" if seconds >= 600 else f"{seconds} seconds"
    return f"Stopped by the sweep: not finished within {within} (its worker was probably lost). Start it again."


def _jobs_and_limits(limits: dict) -> list[tuple[str, object, int]]:
    """(kind, its unfinished jobs, seconds they may take), for every kind of job."""
    return [
        ("guidance", GuidanceRequest.objects.exclude(IN_A_COMPARISON), limits["guidance"]),
        ("guidance", GuidanceRequest.objects.filter(IN_A_COMPARISON), limits["comparison"]),
        ("import", ImportJob.objects.all(), limits["import"]),
        ("peer_model", PeerModel.objects.all(), limits["peer_model"]),
        ("comparison", ComparisonRun.objects.all(), limits["comparison"]),
        ("refinement", RefinementRun.objects.all(), limits["refinement"]),
        ("evaluation", EvaluationRun.objects.all(), limits["evaluation"]),
    ]


def sweep_stuck_jobs(*, now=None) -> dict[str, int]:
    now = now or timezone.now()
    swept: dict[str, int] = {}
    for kind, jobs, seconds in _jobs_and_limits(settings.PMLM_JOB_LIMITS_SECONDS):
        since = now - timedelta(seconds=seconds)
        stuck = jobs.filter(status__in=UNFINISHED, created_at__lt=since).filter(
            Q(started_at__isnull=True) | Q(started_at__lt=since)
        )
        reason = _reason(seconds)
        swept[kind] = swept.get(kind, 0) + stuck.update(
            status=JobStatus.FAILED, error=reason, message=reason, finished_at=now
        )
    return swept
