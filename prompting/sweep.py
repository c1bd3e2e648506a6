"""Fail long jobs that have stopped moving, with the reason, so no page or partner waits forever."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from patients.models import ImportJob, JobStatus
from prompting.models import ComparisonRun, EvaluationRun, GuidanceRequest, PeerModel, RefinementRun

UNFINISHED = (JobStatus.QUEUED, JobStatus.RUNNING)


def _reason(minutes: int) -> str:
    return (f"Stopped by the sweep: not finished within {minutes} minutes (its worker was probably lost). "
            "Start it again.")


def sweep_stuck_jobs(*, now=None) -> dict[str, int]:
    now = now or timezone.now()
    limits = settings.PMLM_JOB_LIMITS_MINUTES
    swept = {}
    minutes = limits["guidance"]
    swept["guidance"] = GuidanceRequest.objects.filter(
        status__in=UNFINISHED, created_at__lt=now - timedelta(minutes=minutes)).filter(
        Q(started_at__isnull=True) | Q(started_at__lt=now - timedelta(minutes=minutes))).update(
        status=JobStatus.FAILED, error=_reason(minutes), finished_at=now)
    for key, model in (("import", ImportJob), ("peer_model", PeerModel), ("comparison", ComparisonRun)):
        minutes = limits[key]
        swept[key] = model.objects.filter(status__in=UNFINISHED, created_at__lt=now - timedelta(minutes=minutes)).update(
            status=JobStatus.FAILED, message=_reason(minutes), finished_at=now)
    for key, model in (("refinement", RefinementRun), ("evaluation", EvaluationRun)):
        minutes = limits[key]
        swept[key] = model.objects.filter(status__in=UNFINISHED, created_at__lt=now - timedelta(minutes=minutes)).update(
            status=JobStatus.FAILED, error=_reason(minutes), message=_reason(minutes), finished_at=now)
    return swept
