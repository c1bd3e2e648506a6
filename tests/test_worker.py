"""Real Celery workers on the configured broker: jobs of both lanes, each lane's own workers and time
limits, and, on Redis, a lost guidance request handed on by its lane while batch work runs undisturbed."""

import json
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from patients import models as m
from patients.services import import_job_create, import_job_run
from pmlm_site.lanes import BATCH, INTERACTIVE, queue_name
from tests import fhir_builders as fb
from tests.helpers import running_worker

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def worker():
    with running_worker() as process:
        yield process


def wait_for(predicate, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_imports_an_uploaded_bundle_once(worker, organisation, clinician):
    upload = SimpleUploadedFile("north.json", json.dumps(fb.small_bundle("pat-w")).encode())
    job = import_job_create(organisation=organisation, upload=upload, user=clinician)
    finished = wait_for(lambda: m.ImportJob.objects.get(pk=job.pk).status in (m.JobStatus.DONE, m.JobStatus.FAILED))
    if not finished:
        worker.terminate()
        pytest.fail("the worker did not finish the job:\n" + worker.communicate(timeout=20)[0][-3000:])
    job.refresh_from_db()
    assert job.status == m.JobStatus.DONE, job.message
    assert job.progress == 100
    assert job.bundle_import.status == m.ImportStatus.IMPORTED
    assert organisation.patients.get().external_id == "pat-w"
    # Delivered twice (a retry after a lost worker): the finished job is left alone.
    observations = m.Observation.objects.count()
    assert import_job_run(job_id=job.pk) == m.JobStatus.DONE
    assert m.Observation.objects.count() == observations


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_trains_a_refinement_run_and_shows_its_progress_while_it_runs(
    cohort, tiny_policy, tiny_checkpoint, organisation
):
    from prompting.models import PromptTemplate, RefinementRun
    from prompting.refinement import refinement_run_create, refinement_run_queue

    PromptTemplate.objects.get_or_create(
        version="pmlm-1", defaults={"active": True}
    )  # a flushed test database has no data migrations
    with running_worker(PMLM_REFINER_BASE_CHECKPOINT=str(tiny_checkpoint)) as process:
        run = refinement_run_create(organisation=organisation, steps=3, max_examples=8, num_generations=2)
        refinement_run_queue(run=run)
        seen = set()

        def finished():
            current = RefinementRun.objects.get(pk=run.pk)
            seen.add((current.status, current.progress))
            return current.status in m.JobStatus.finished()

        if not wait_for(finished, timeout=180):
            process.terminate()
            pytest.fail("the worker did not finish the run:\n" + process.communicate(timeout=20)[0][-3000:])
    run.refresh_from_db()
    assert run.status == m.JobStatus.DONE, run.error
    assert len(run.curve) == 3
    assert run.checkpoint
    assert any(status == m.JobStatus.RUNNING and 0 < progress < 100 for status, progress in seen)  # progress was live


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_an_evaluation_and_its_table_is_stored(cohort, tiny_policy, organisation):
    from prompting.evaluation_runs import evaluation_run_create, evaluation_run_queue
    from prompting.models import EvaluationRun, PromptTemplate

    PromptTemplate.objects.get_or_create(
        version="pmlm-1", defaults={"active": True}
    )  # a flushed test database has no data migrations
    with running_worker() as process:
        run = evaluation_run_create(
            organisation=organisation,
            variants=("general", "self", "peer", "pmlm"),
            resamples=200,
            endpoint_names=["tiny-target"],
        )
        evaluation_run_queue(run=run)
        if not wait_for(lambda: EvaluationRun.objects.get(pk=run.pk).status in m.JobStatus.finished(), timeout=180):
            process.terminate()
            pytest.fail("the worker did not finish the evaluation:\n" + process.communicate(timeout=20)[0][-3000:])
    run.refresh_from_db()
    assert run.status == m.JobStatus.DONE, run.error
    assert len(run.rows) == 8
    assert run.items.count() == run.examples * 8
    assert run.progress == 100


def hospital_endpoint(server, name="hospital-llm", **settings_):
    from prompting.models import LLMEndpoint

    return LLMEndpoint.objects.create(
        name=name,
        kind="openai",
        settings={"base_url": server.base_url, "model": "m", "timeout": 90, "max_attempts": 1, **settings_},
    )


@pytest.fixture
def her(organisation):
    from patients.services import patient_import_bundle
    from prompting.models import PromptTemplate

    PromptTemplate.objects.get_or_create(
        version="pmlm-1", defaults={"active": True}
    )  # a flushed test database has no data migrations
    assert patient_import_bundle(organisation=organisation, bundle=fb.small_bundle("pat-k"), source="test").ok
    return organisation.patients.get(external_id="pat-k")


def worker_log(process) -> str:
    process.terminate()
    return process.communicate(timeout=30)[0][-3000:]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_guidance_takes_the_interactive_lane_and_an_import_the_batch_lane(her, organisation):
    from prompting.guidance import guidance_request_create
    from prompting.models import GuidanceRequest
    from tests.llm_servers import ScriptedServer, completion

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    with ScriptedServer(("json", 200, completion("Repeat BP within a week."), {})) as server:
        with running_worker(prefix, lanes=(INTERACTIVE,)) as interactive:
            upload = SimpleUploadedFile("north.json", json.dumps(fb.small_bundle("pat-b")).encode())
            job = import_job_create(organisation=organisation, upload=upload)
            guidance = guidance_request_create(
                patient=her, question="What now?", endpoint=hospital_endpoint(server), use_retrieval=False
            )
            if not wait_for(lambda: GuidanceRequest.objects.get(pk=guidance.pk).status in m.JobStatus.finished()):
                pytest.fail("the interactive worker did not answer:\n" + worker_log(interactive))
            assert GuidanceRequest.objects.get(pk=guidance.pk).status == m.JobStatus.DONE
            assert m.ImportJob.objects.get(pk=job.pk).status == m.JobStatus.QUEUED  # not its lane
        with running_worker(prefix, lanes=(BATCH,)) as batch:
            if not wait_for(lambda: m.ImportJob.objects.get(pk=job.pk).status in m.JobStatus.finished()):
                pytest.fail("the batch worker did not import:\n" + worker_log(batch))
    assert m.ImportJob.objects.get(pk=job.pk).status == m.JobStatus.DONE


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_interactive_request_past_the_lanes_time_limit_is_stopped_and_fails_with_the_reason(her, monkeypatch):
    from prompting.guidance import guidance_request_create
    from prompting.models import GuidanceRequest
    from prompting.tasks import run_guidance_task
    from tests.llm_servers import ScriptedServer

    # Time limits travel in the task's message, from the sender's settings: here 3 s (soft) and 8 s (hard).
    for name, value in (("soft_time_limit", 3), ("time_limit", 8), ("_exec_options", None)):
        monkeypatch.setattr(run_guidance_task, name, value)
    # The LLM takes 60 s; the soft limit stops the task, as a prefork worker enforces it.
    with (
        ScriptedServer(
            ("sleep", 60),
        ) as server,
        running_worker(lanes=(INTERACTIVE,), pool="prefork") as process,
    ):
        guidance = guidance_request_create(
            patient=her, question="What now?", endpoint=hospital_endpoint(server, deadline=120), use_retrieval=False
        )
        if not wait_for(
            lambda: GuidanceRequest.objects.get(pk=guidance.pk).status in m.JobStatus.finished(), timeout=45
        ):
            pytest.fail("the request was not stopped:\n" + worker_log(process))
    guidance.refresh_from_db()
    assert guidance.status == m.JobStatus.FAILED
    assert guidance.error.startswith("Not finished in time")
    assert (guidance.finished_at - guidance.started_at).total_seconds() < 8


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(
    not settings.CELERY_BROKER_URL.startswith("redis"),
    reason="redelivery after a killed worker needs a broker that holds unacknowledged tasks (Redis, as in CI)",
)
def test_a_lost_interactive_request_is_redelivered_by_the_lanes_next_worker_while_a_running_batch_task_stays_put(
    her, organisation
):
    import redis

    prefix = f"test-{uuid.uuid4().hex[:8]}"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        redelivered_while_batch_work_runs(prefix, broker, her, organisation)
    finally:  # the batch task, stopped with its worker, is left on this run's own queues
        for pattern in (f"{prefix}-*", f"_kombu.binding.{prefix}-*"):
            for key in broker.scan_iter(pattern):
                broker.delete(key)


def redelivered_while_batch_work_runs(prefix, broker, her, organisation):
    import signal

    from prompting.guidance import comparison_run_create, guidance_request_create
    from prompting.models import ComparisonRun, GuidanceRequest, PersonalizedPrompt
    from tests.llm_servers import ScriptedServer, completion

    # The interactive lane hands a lost task on 5 s after delivery (a minute in production); the batch lane keeps its
    # default, hours. The first guidance answer hangs: its worker dies waiting. The batch task's LLM is slow (60 s).
    fast = {"PMLM_INTERACTIVE_TIME_LIMIT": "4", "PMLM_INTERACTIVE_VISIBILITY_TIMEOUT": "5"}
    with (
        ScriptedServer(("sleep", 20), ("json", 200, completion("Repeat BP within a week."), {})) as server,
        ScriptedServer(
            ("sleep", 60),
        ) as slow,
        running_worker(prefix, lanes=(BATCH,), **fast) as batch,
    ):
        endpoint = hospital_endpoint(server)
        comparison = comparison_run_create(
            organisation=organisation,
            patient_ids=["pat-k"],
            questions=["Slow?"],
            endpoint_names=[hospital_endpoint(slow, "slow-llm", deadline=120).name],
        )
        assert wait_for(lambda: len(slow.requests) == 1, timeout=60), (
            "the batch worker never asked its LLM:\n" + worker_log(batch)
        )
        with running_worker(prefix, lanes=(INTERACTIVE,), **fast) as first:
            guidance = guidance_request_create(
                patient=her, question="What now?", endpoint=endpoint, use_retrieval=False
            )
            assert wait_for(lambda: len(server.requests) == 1, timeout=60), "the first worker never asked the LLM"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert GuidanceRequest.objects.get(pk=guidance.pk).status == "running"  # caught in the middle
        with running_worker(prefix, lanes=(INTERACTIVE,), **fast) as second:
            if not wait_for(
                lambda: GuidanceRequest.objects.get(pk=guidance.pk).status in ("done", "failed"), timeout=60
            ):
                pytest.fail("the task was not redelivered:\n" + worker_log(second))
            # The batch task, delivered before and still running, was not handed on: it is still the batch
            # worker's, unacknowledged, in the batch lane's own record, and its queue is empty.
            assert ComparisonRun.objects.get(pk=comparison.pk).status == "running"
            assert len(slow.requests) == 1
            assert broker.hlen(f"{queue_name(prefix, BATCH)}-unacked") == 1
            assert broker.llen(queue_name(prefix, BATCH)) == 0
    guidance.refresh_from_db()
    assert guidance.status == "done"
    assert guidance.text == "Repeat BP within a week."
    assert GuidanceRequest.objects.filter(pk=guidance.pk).count() == 1
    assert PersonalizedPrompt.objects.filter(patient=her, question="What now?").count() == 1
    assert len(server.requests) == 2  # asked once by each worker, answered once
