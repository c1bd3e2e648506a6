"""Only the claim that runs a job may finish it. A job the sweep failed while its worker was still at
it stays failed with the sweep's reason; a worker whose job a redelivered task claimed again
finishes nothing; a swept job is not run again when its task comes back."""

import json
from datetime import date, timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

import patients.services as patient_services
from patients import models as pm
from patients.services import import_job_create, import_job_run, patient_import_bundle
from prompting import guidance as guidance_module
from prompting.evaluation_runs import evaluation_run_create, evaluation_run_execute
from prompting.guidance import (
    comparison_run_create,
    comparison_run_execute,
    guidance_request_create,
    guidance_request_run,
)
from prompting.llm import LLMError, LLMResult
from prompting.models import ComparisonRun, GuidanceRequest, LLMEndpoint, PeerModel
from prompting.peer_models import peer_model_create, peer_model_train
from prompting.refinement import refinement_run_create, refinement_run_execute
from prompting.sweep import sweep_stuck_jobs
from tests import fhir_builders as fb
from tests.llm_servers import ScriptedServer, completion

AT = date(2025, 5, 2)
ANSWER = "Repeat her blood pressure within a week."


def sweep_as_if_much_later():
    """The sweep, run as if every unfinished job had been going for a day: it fails them all."""
    return sweep_stuck_jobs(now=timezone.now() + timedelta(days=1))


@pytest.fixture
def patient(organisation):
    assert patient_import_bundle(organisation=organisation, bundle=fb.small_bundle("pat-o"), source="test").ok
    return organisation.patients.get(external_id="pat-o")


class WhileTheLLMAnswers:
    """An endpoint whose answer takes long enough for something else to happen first."""

    kind, model_name = "openai", "slow-model"

    def __init__(self, meanwhile, *, then_fail: bool = False):
        self.meanwhile, self.then_fail = meanwhile, then_fail

    def generate(self, messages, *, max_tokens=256, temperature=0.2, on_token=None):
        self.meanwhile()
        if self.then_fail:
            raise LLMError("the server went away")
        if on_token:
            on_token(ANSWER)
        return LLMResult(text=ANSWER, model=self.model_name)


def queued_guidance(patient, monkeypatch, backend) -> GuidanceRequest:
    monkeypatch.setattr(guidance_module, "build_backend", lambda *args, **kwargs: backend)
    return guidance_request_create(patient=patient, question="What now?", at=AT, use_retrieval=False)


class TestGuidance:
    def test_a_request_the_sweep_failed_while_its_worker_waited_stays_failed_with_the_sweeps_reason(
        self, patient, monkeypatch
    ):
        guidance = queued_guidance(patient, monkeypatch, WhileTheLLMAnswers(sweep_as_if_much_later))
        guidance = guidance_request_run(guidance_id=guidance.pk)
        assert guidance.status == pm.JobStatus.FAILED
        assert guidance.error.startswith("Stopped by the sweep")
        assert guidance.text != ANSWER
        assert not guidance.model

    def test_a_request_that_then_fails_keeps_the_sweeps_reason(self, patient, monkeypatch):
        guidance = queued_guidance(patient, monkeypatch, WhileTheLLMAnswers(sweep_as_if_much_later, then_fail=True))
        guidance = guidance_request_run(guidance_id=guidance.pk)
        assert guidance.status == pm.JobStatus.FAILED
        assert guidance.error.startswith("Stopped by the sweep")

    def test_a_worker_whose_request_a_redelivered_task_claimed_again_leaves_it_to_that_claim(
        self, patient, monkeypatch
    ):
        claims = []
        backend = WhileTheLLMAnswers(lambda: claims.append(guidance_module._claim(guidance.pk).started_at))
        guidance = queued_guidance(patient, monkeypatch, backend)
        guidance = guidance_request_run(guidance_id=guidance.pk)
        assert guidance.status == pm.JobStatus.RUNNING
        assert guidance.started_at == claims[0]
        assert guidance.text == ""

    def test_a_swept_request_is_not_run_again_when_its_task_comes_back(self, patient, monkeypatch):
        guidance = queued_guidance(patient, monkeypatch, WhileTheLLMAnswers(lambda: None))
        assert sweep_as_if_much_later()["guidance"] == 1
        assert guidance_request_run(guidance_id=guidance.pk).status == pm.JobStatus.FAILED


class TestLongJobs:
    def test_a_refinement_run_the_sweep_failed_stays_failed_and_stops_training(self, cohort, tiny_policy, organisation):
        run = refinement_run_create(organisation=organisation, steps=3, max_examples=8, num_generations=2)

        def sweep_after_the_first_step(percent, message):
            if message.startswith("Step 1/"):
                sweep_as_if_much_later()

        run = refinement_run_execute(run_id=run.pk, on_progress=sweep_after_the_first_step)
        assert run.status == pm.JobStatus.FAILED and run.message.startswith("Stopped by the sweep"), run.message
        assert run.error.startswith("Stopped by the sweep")
        assert run.step < 3
        assert run.checkpoint == ""

    def test_an_evaluation_the_sweep_failed_stays_failed(self, cohort, tiny_policy, organisation):
        run = evaluation_run_create(
            organisation=organisation, resamples=200, endpoint_names=["tiny-target"], variants=("general", "self")
        )
        swept = []

        def sweep_once(percent, message):
            if not swept:
                swept.append(sweep_as_if_much_later())

        run = evaluation_run_execute(run_id=run.pk, on_progress=sweep_once)
        assert run.status == pm.JobStatus.FAILED and run.message.startswith("Stopped by the sweep"), run.message
        assert run.error.startswith("Stopped by the sweep")
        assert not run.rows

    def test_a_comparison_the_sweep_failed_stays_failed_and_is_not_run_again(self, patient, organisation):
        with ScriptedServer(("json", 200, completion(ANSWER), {})) as server:
            LLMEndpoint.objects.create(
                name="hospital-llm", kind="openai", settings={"base_url": server.base_url, "model": "m"}
            )
            run = comparison_run_create(
                organisation=organisation,
                patient_ids=["pat-o"],
                questions=["What now?"],
                endpoint_names=["hospital-llm"],
            )
            run = comparison_run_execute(run_id=run.pk, on_progress=lambda percent, message: sweep_as_if_much_later())
            assert run.status == pm.JobStatus.FAILED
            assert run.message.startswith("Stopped by the sweep")
            assert not run.table
            asked = len(server.requests)
            assert comparison_run_execute(run_id=run.pk).status == pm.JobStatus.FAILED  # its task, redelivered
            assert len(server.requests) == asked
            assert ComparisonRun.objects.get(pk=run.pk).status == pm.JobStatus.FAILED

    def test_an_import_the_sweep_failed_stays_failed(self, organisation, monkeypatch):
        real_import = patient_services.fhir_import_paths

        def import_after_the_sweep(**kwargs):
            sweep_as_if_much_later()
            return real_import(**kwargs)

        monkeypatch.setattr(patient_services, "fhir_import_paths", import_after_the_sweep)
        job = import_job_create(
            organisation=organisation,
            upload=SimpleUploadedFile("north.json", json.dumps(fb.small_bundle("pat-i")).encode()),
        )
        assert import_job_run(job_id=job.pk) == pm.JobStatus.FAILED
        job.refresh_from_db()
        assert job.status == pm.JobStatus.FAILED
        assert job.message.startswith("Stopped by the sweep")

    def test_a_peer_model_the_sweep_failed_stays_failed(self, organisation):
        from patients.demo.seed import demo_seed

        demo_seed(seed=3, limit=30, password="demo-password-1", synthetic_patients=60, knowledge=False)
        organisation = pm.Organisation.objects.get(slug="demo-clinic")

        def sweep_before_storing(percent, message):
            if message.startswith("Storing peers"):
                sweep_as_if_much_later()

        model = peer_model_train(
            peer_model_id=peer_model_create(organisation=organisation).pk, on_progress=sweep_before_storing
        )
        model = PeerModel.objects.get(pk=model.pk)
        assert model.status == pm.JobStatus.FAILED
        assert model.message.startswith("Stopped by the sweep")
        assert not model.active
