"""A real Celery worker, on the configured broker, imports an uploaded bundle."""

import json
import os
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection

from patients import models as m
from patients.services import import_job_create, import_job_run
from pmlm_site.celery import app as celery_app
from tests import fhir_builders as fb

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgresql://{auth}@{db['HOST'] or 'localhost'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def running_worker(queue: str = "", **extra_env):
    queue = queue or f"test-{uuid.uuid4().hex[:8]}"
    previous_queue = celery_app.conf.task_default_queue
    celery_app.conf.task_default_queue = queue
    env = dict(os.environ, DATABASE_URL=database_url(), PMLM_CELERY_QUEUE=queue, CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
               PMLM_VAR_DIR=str(settings.VAR_DIR), DJANGO_DEBUG="1", DATABASE_CONN_MAX_AGE="0", **extra_env)
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "pmlm_site", "worker", "--pool=solo", "--loglevel=INFO", "-Q", queue,
         "--without-gossip", "--without-mingle", "--without-heartbeat"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        yield process
    finally:
        celery_app.conf.task_default_queue = previous_queue
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


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
    assert job.progress == 100 and job.bundle_import.status == m.ImportStatus.IMPORTED
    assert organisation.patients.get().external_id == "pat-w"
    # Delivered twice (a retry after a lost worker): the finished job is left alone.
    observations = m.Observation.objects.count()
    assert import_job_run(job_id=job.pk) == m.JobStatus.DONE
    assert m.Observation.objects.count() == observations


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_trains_a_refinement_run_and_shows_its_progress_while_it_runs(cohort, tiny_policy, tiny_checkpoint,
                                                                                     organisation):
    from prompting.models import PromptTemplate, RefinementRun
    from prompting.refinement import refinement_run_create, refinement_run_queue

    PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={"active": True})  # a flushed test database has no data migrations
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
    assert len(run.curve) == 3 and run.checkpoint
    assert any(status == m.JobStatus.RUNNING and 0 < progress < 100 for status, progress in seen)  # progress was live


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_an_evaluation_and_its_table_is_stored(cohort, tiny_policy, organisation):
    from prompting.evaluation import evaluation_run_create, evaluation_run_queue
    from prompting.models import EvaluationRun, PromptTemplate

    PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={"active": True})  # a flushed test database has no data migrations
    with running_worker() as process:
        run = evaluation_run_create(organisation=organisation, variants=("general", "self", "peer", "pmlm"), resamples=200,
                                    endpoint_names=["tiny-target"])
        evaluation_run_queue(run=run)
        if not wait_for(lambda: EvaluationRun.objects.get(pk=run.pk).status in m.JobStatus.finished(), timeout=180):
            process.terminate()
            pytest.fail("the worker did not finish the evaluation:\n" + process.communicate(timeout=20)[0][-3000:])
    run.refresh_from_db()
    assert run.status == m.JobStatus.DONE, run.error
    assert len(run.rows) == 8 and run.items.count() == run.examples * 8 and run.progress == 100


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not settings.CELERY_BROKER_URL.startswith("redis"),
                    reason="redelivery after a killed worker needs a broker that holds unacknowledged tasks (Redis, as in CI)")
def test_a_worker_killed_mid_guidance_loses_nothing_the_task_is_redelivered_and_completes_once(organisation, monkeypatch):
    import signal

    from patients.services import patient_import_bundle
    from prompting.guidance import guidance_request_create
    from prompting.models import GuidanceRequest, LLMEndpoint, PersonalizedPrompt, PromptTemplate
    from tests.llm_servers import ScriptedServer, completion

    PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={"active": True})
    assert patient_import_bundle(organisation=organisation, bundle=fb.small_bundle("pat-k"), source="test").ok
    patient = organisation.patients.get(external_id="pat-k")
    # The first answer hangs (the worker dies while waiting); the redelivered task gets a real one.
    with ScriptedServer(("sleep", 20), ("json", 200, completion("Repeat BP within a week."), {})) as server:
        endpoint = LLMEndpoint.objects.create(name="hospital-llm", kind="openai", settings={
            "base_url": server.base_url, "model": "m", "timeout": 90, "max_attempts": 1})
        env = {"PMLM_BROKER_VISIBILITY_TIMEOUT": "5", "PMLM_BROKER_RESTORE_THROTTLE": "1"}
        monkeypatch.setitem(celery_app.conf.broker_transport_options, "visibility_timeout", 5)
        queue = f"test-{uuid.uuid4().hex[:8]}"  # the second worker must listen where the task is redelivered
        with running_worker(queue, **env) as first:
            guidance = guidance_request_create(patient=patient, question="What now?", endpoint=endpoint, use_retrieval=False)
            assert wait_for(lambda: len(server.requests) == 1, timeout=60), "the first worker never asked the LLM"
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        assert GuidanceRequest.objects.get(pk=guidance.pk).status == "running"  # caught in the middle
        with running_worker(queue, **env) as second:
            done = wait_for(lambda: GuidanceRequest.objects.get(pk=guidance.pk).status in ("done", "failed"), timeout=120)
            if not done:
                second.terminate()
                pytest.fail("the task was not redelivered:\n" + second.communicate(timeout=20)[0][-3000:])
    guidance.refresh_from_db()
    assert guidance.status == "done" and guidance.text == "Repeat BP within a week."
    assert GuidanceRequest.objects.count() == 1 and PersonalizedPrompt.objects.filter(patient=patient).count() == 1
    assert len(server.requests) == 2  # asked once by each worker, answered once
