"""Recovery after a lost worker, per lane: the broker's visibility timeout, the task time limits and the
sweep agree, so a lost interactive request is handed on or failed within about a minute and a batch
job within its own limit. (A real worker killed and its request redelivered: tests/test_worker.py.)"""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from patients import models as pm
from patients.services import patient_import_bundle
from pmlm_site.celery import app as celery_app
from pmlm_site.lanes import BATCH, BATCH_TASK_LIMITS, INTERACTIVE, TASK_LANES, lane_of, queue_name
from prompting.guidance import _claim, guidance_request_create
from prompting.llm.base import DEFAULT_DEADLINE
from prompting.models import GuidanceRequest, RefinementRun
from prompting.sweep import sweep_stuck_jobs
from tests import fhir_builders as fb


def limits(task: str) -> tuple[int, int]:
    task = celery_app.tasks[task]
    return task.soft_time_limit, task.time_limit


class TestTheLanesAgree:
    def test_every_task_of_ours_has_a_lane_and_lane_queues_carry_the_deployments_prefix(self):
        celery_app.loader.import_default_modules()
        ours = {name for name in celery_app.tasks if name.startswith(("prompting.", "patients.", "audit."))}
        assert ours == set(TASK_LANES)
        prefix = settings.PMLM_CELERY_QUEUE
        assert settings.CELERY_TASK_ROUTES["prompting.tasks.run_guidance_task"] == {
            "queue": queue_name(prefix, INTERACTIVE)
        }
        assert settings.CELERY_TASK_ROUTES["patients.tasks.run_import_job"] == {"queue": queue_name(prefix, BATCH)}
        assert settings.CELERY_TASK_DEFAULT_QUEUE == queue_name(prefix, BATCH)

    def test_each_lane_has_its_own_queue_exchange_and_key_so_no_task_reaches_both_lanes(self):
        declared = {q.name: (q.exchange.name, q.routing_key) for q in celery_app.amqp.queues.values()}
        for task, lane in (
            ("prompting.tasks.run_guidance_task", INTERACTIVE),
            ("patients.tasks.run_import_job", BATCH),
        ):
            name = queue_name(settings.PMLM_CELERY_QUEUE, lane)
            queue = celery_app.amqp.router.route({}, task)["queue"]
            assert (queue.name, queue.exchange.name, queue.routing_key) == (name, name, name)
            assert declared[name] == (name, name)

    def test_an_interactive_request_is_stopped_handed_on_or_swept_within_about_a_minute(self):
        soft, hard = limits("prompting.tasks.run_guidance_task")
        visibility = settings.PMLM_INTERACTIVE_VISIBILITY_TIMEOUT
        swept_after = settings.PMLM_JOB_LIMITS_SECONDS["guidance"]
        assert DEFAULT_DEADLINE < soft < hard < visibility <= swept_after  # each bound inside the next
        assert visibility <= 75
        assert swept_after + settings.PMLM_SWEEP_INTERVAL <= 105  # about a minute, at worst
        assert celery_app.conf.beat_schedule["sweep-stuck-jobs"]["schedule"] == settings.PMLM_SWEEP_INTERVAL
        assert limits("prompting.tasks.sweep_stuck_jobs_task")[1] <= hard  # the sweep is interactive work

    def test_a_batch_task_is_stopped_at_its_jobs_limit_and_never_handed_on_while_it_runs(self):
        for task, job in BATCH_TASK_LIMITS.items():
            soft, hard = limits(task)
            assert soft < hard == settings.PMLM_JOB_LIMITS_SECONDS[job] < settings.PMLM_BATCH_VISIBILITY_TIMEOUT, task

    def test_a_worker_is_interactive_only_when_it_consumes_nothing_but_the_interactive_lane(self):
        assert lane_of("pmlm-interactive", "pmlm") == INTERACTIVE
        assert lane_of(["pmlm-interactive"], "pmlm") == INTERACTIVE
        assert (
            lane_of("pmlm-interactive,pmlm-batch", "pmlm") == BATCH
        )  # both: the long timeout, nothing handed on early
        assert lane_of(None, "pmlm") == BATCH
        assert lane_of("other-interactive", "pmlm") == BATCH


@pytest.fixture
def claimed(organisation):
    """A guidance request a worker claimed, then lost (nobody finishes it)."""
    assert patient_import_bundle(organisation=organisation, bundle=fb.small_bundle("pat-r"), source="test").ok
    guidance = guidance_request_create(patient=organisation.patients.get(), question="What now?", use_retrieval=False)
    return _claim(guidance.pk)


class TestTheSweep:
    def test_a_lost_interactive_request_is_failed_about_a_minute_after_its_worker_started_it(self, claimed):
        limit = timedelta(seconds=settings.PMLM_JOB_LIMITS_SECONDS["guidance"])
        assert (
            sweep_stuck_jobs(now=claimed.started_at + limit - timedelta(seconds=5))["guidance"] == 0
        )  # still its worker's
        assert sweep_stuck_jobs(now=claimed.started_at + limit + timedelta(seconds=1))["guidance"] == 1
        claimed.refresh_from_db()
        assert claimed.status == pm.JobStatus.FAILED
        assert claimed.error.startswith(
            f"Stopped by the sweep: not finished within {settings.PMLM_JOB_LIMITS_SECONDS['guidance']} seconds"
        )

    def test_a_request_handed_on_to_another_worker_is_judged_by_its_new_start(self, claimed):
        limit = timedelta(seconds=settings.PMLM_JOB_LIMITS_SECONDS["guidance"])
        GuidanceRequest.objects.filter(pk=claimed.pk).update(
            created_at=timezone.now() - 2 * limit, started_at=timezone.now() - 2 * limit
        )
        again = _claim(claimed.pk)  # the redelivered task
        assert sweep_stuck_jobs(now=again.started_at + limit / 2)["guidance"] == 0

    def test_guidance_a_comparison_asks_for_in_its_batch_task_waits_as_long_as_the_comparison_may(self, claimed):
        GuidanceRequest.objects.filter(pk=claimed.pk).update(idempotency_key="comparison-1-1")
        interactive = timedelta(seconds=settings.PMLM_JOB_LIMITS_SECONDS["guidance"])
        comparison = timedelta(seconds=settings.PMLM_JOB_LIMITS_SECONDS["comparison"])
        assert sweep_stuck_jobs(now=claimed.started_at + 2 * interactive)["guidance"] == 0
        assert sweep_stuck_jobs(now=claimed.started_at + comparison + timedelta(seconds=1))["guidance"] == 1

    def test_a_batch_job_is_failed_at_its_own_limit_counted_from_its_start(self, organisation):
        hours = timedelta(hours=1)
        limit = timedelta(seconds=settings.PMLM_JOB_LIMITS_SECONDS["refinement"])
        run = RefinementRun.objects.create(
            organisation=organisation, version=1, status=pm.JobStatus.RUNNING, started_at=timezone.now() - hours
        )
        RefinementRun.objects.filter(pk=run.pk).update(
            created_at=timezone.now() - limit - hours
        )  # it waited in the queue
        assert sweep_stuck_jobs()["refinement"] == 0
        assert sweep_stuck_jobs(now=timezone.now() + limit)["refinement"] == 1
