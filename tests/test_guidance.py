"""Guidance requests end to end: the local SmolLM2, a hospital server, failures, safety, privacy."""

import json
from datetime import date

import pytest
from django.core.management import CommandError, call_command

from patients import models as pm
from patients.services import patient_import_bundle
from prompting.guidance import comparison_run_create, guidance_request_create, guidance_request_run
from prompting.models import GuidanceRequest, LLMEndpoint
from prompting.pmlm.tokens import smollm2_gguf_path
from tests.helpers import hypertensive_bundle
from tests.llm_servers import LlamaServer, ScriptedServer, completion

QUESTION = "Her blood pressure is high: what should we do at this visit?"
AT = date(2025, 5, 2)


@pytest.fixture
def patient(organisation):
    assert patient_import_bundle(organisation=organisation, bundle=hypertensive_bundle(), source="test").ok
    return organisation.patients.get(external_id="p-bp")


def openai_endpoint(name, base_url, **settings):
    return LLMEndpoint.objects.create(
        name=name,
        kind="openai",
        openness="proprietary",
        settings={
            "base_url": base_url,
            "model": "gpt-test",
            "timeout": 2,
            "max_attempts": 2,
            "backoff": 0.01,
            **settings,
        },
    )


def test_the_local_smollm2_answers_with_citations_when_retrieval_is_on(patient, knowledge):
    guidance = guidance_request_create(patient=patient, question=QUESTION, at=AT, run_inline=True)
    assert guidance.status == pm.JobStatus.DONE, guidance.error
    assert guidance.endpoint.name == "smollm2-local"
    assert guidance.backend == "llamacpp"
    assert guidance.model == "SmolLM2-135M-Instruct.Q8_0.gguf"
    assert len(guidance.text) > 20
    assert guidance.usage["completion_tokens"] > 0
    assert guidance.latency_ms > 0
    assert len(guidance.citations) == 3
    assert all(c["title"].startswith("WHO ANC") for c in guidance.citations)
    assert "[1]" in guidance.prompt.text
    assert any(s["source"] == "knowledge" for s in guidance.prompt.sections)


def test_without_retrieval_there_are_no_citations(patient, knowledge):
    guidance = guidance_request_create(patient=patient, question=QUESTION, at=AT, use_retrieval=False, run_inline=True)
    assert guidance.status == pm.JobStatus.DONE
    assert guidance.citations == []
    assert all(s["source"] != "knowledge" for s in guidance.prompt.sections)


def test_ask_prints_the_design_json(patient, knowledge, capsys):
    call_command("ask", "--patient", "p-bp", "--question", QUESTION, "--at", "2025-05-02", "--json")
    data = json.loads(capsys.readouterr().out)
    assert {"guidance", "citations", "backend", "model", "usage", "latency_ms", "prompt"} <= set(data)
    assert data["guidance"]
    assert data["citations"]
    assert data["notice"].startswith("Decision support")
    call_command("ask", "--patient", "p-bp", "--question", QUESTION, "--at", "2025-05-02", "--no-rag", "--json")
    assert json.loads(capsys.readouterr().out)["citations"] == []
    with pytest.raises(CommandError, match="No active LLM endpoint named 'nope'"):
        call_command("ask", "--patient", "p-bp", "--question", QUESTION, "--backend", "nope")


def test_a_failing_server_ends_in_a_failed_request_with_its_reason(patient):
    with ScriptedServer(("json", 503, {"error": {"message": "maintenance"}}, {})) as server:
        endpoint = openai_endpoint("hospital-vllm", server.base_url)
        guidance = guidance_request_create(
            patient=patient, question=QUESTION, at=AT, endpoint=endpoint, use_retrieval=False, run_inline=True
        )
    assert guidance.status == pm.JobStatus.FAILED
    assert "503: maintenance after 2 attempts" in guidance.error
    assert len(server.requests) == 2


def test_a_server_that_times_out_never_leaves_a_hanging_job(patient):
    with ScriptedServer(
        ("sleep", 4),
    ) as server:
        endpoint = openai_endpoint("slow-api", server.base_url, timeout=0.5)
        guidance = guidance_request_create(
            patient=patient, question=QUESTION, at=AT, endpoint=endpoint, use_retrieval=False, run_inline=True
        )
    assert guidance.status == pm.JobStatus.FAILED
    assert "did not answer within 0.5 s" in guidance.error


def test_no_identifiable_data_reaches_an_endpoint_that_may_not_receive_it(organisation):
    bundle = hypertensive_bundle("p-priv")
    bundle["entry"][0]["resource"]["telecom"][0]["value"] = "+44 7700 900555"
    bundle["entry"][3]["resource"]["code"]["coding"][0]["display"] = (
        "Normal pregnancy (Adaeze Okonkwo-Test, MRN-p-priv)"
    )
    assert patient_import_bundle(organisation=organisation, bundle=bundle, source="priv").ok
    patient = organisation.patients.get(external_id="p-priv")
    with ScriptedServer(("json", 200, completion("Repeat BP within a week [1]."), {})) as server:
        endpoint = openai_endpoint("proprietary-api", server.base_url)
        guidance = guidance_request_create(
            patient=patient,
            question="Adaeze Okonkwo-Test (MRN-p-priv): BP plan?",
            at=AT,
            endpoint=endpoint,
            use_retrieval=False,
            run_inline=True,
        )
    assert guidance.status == pm.JobStatus.DONE
    assert guidance.text.startswith("Repeat BP")
    sent = json.dumps([r["body"] for r in server.requests])
    for identifier in (
        "Adaeze",
        "Okonkwo",
        "MRN-p-priv",
        "p-priv",
        "7700 900555",
        "1992-03-14",
        "Clinic Road",
        "Springfield",
    ):
        assert identifier not in sent, identifier
    assert "152/98 mmHg" in sent  # the clinical content does go


def test_a_retried_task_does_not_run_twice_and_an_idempotency_key_returns_the_same_request(patient):
    with ScriptedServer(("json", 200, completion("ok"), {})) as server:
        endpoint = openai_endpoint("hospital", server.base_url)
        first = guidance_request_create(
            patient=patient,
            question=QUESTION,
            at=AT,
            endpoint=endpoint,
            use_retrieval=False,
            idempotency_key="visit-42",
            run_inline=True,
        )
        again = guidance_request_create(
            patient=patient,
            question=QUESTION,
            at=AT,
            endpoint=endpoint,
            use_retrieval=False,
            idempotency_key="visit-42",
            run_inline=True,
        )
        guidance_request_run(guidance_id=first.pk)
    assert first.pk == again.pk
    assert GuidanceRequest.objects.count() == 1
    assert len(server.requests) == 1


def test_the_safety_check_warns_about_a_contraindicated_drug_in_the_guidance(patient):
    with ScriptedServer(("json", 200, completion("Start lisinopril 10 mg daily."), {})) as server:
        endpoint = openai_endpoint("risky", server.base_url)
        guidance = guidance_request_create(
            patient=patient, question=QUESTION, at=AT, endpoint=endpoint, use_retrieval=False, run_inline=True
        )
    assert [w["code"] for w in guidance.warnings] == ["contraindicated_medication"]


def test_the_real_llama_cpp_server_is_an_openai_compatible_endpoint(patient):
    with LlamaServer(str(smollm2_gguf_path())) as server:
        endpoint = LLMEndpoint.objects.create(
            name="llama-server",
            kind="openai",
            openness="open",
            settings={"base_url": server.base_url, "model": "smollm2", "timeout": 120, "deadline": 300},
        )
        guidance = guidance_request_create(
            patient=patient, question=QUESTION, at=AT, endpoint=endpoint, use_retrieval=False, run_inline=True
        )
    assert guidance.status == pm.JobStatus.DONE, guidance.error
    assert guidance.text
    assert guidance.usage["completion_tokens"] > 0
    assert guidance.ttft_ms is not None


def test_the_comparison_runner_covers_every_endpoint_with_and_without_retrieval(patient, knowledge):
    with ScriptedServer(("json", 200, completion("Repeat BP [1]; check urine protein."), {})) as server:
        openai_endpoint("hospital", server.base_url)
        run = comparison_run_create(
            organisation=patient.organisation, patient_ids=["p-bp"], questions=[QUESTION], run_inline=True
        )
    assert run.status == pm.JobStatus.DONE
    assert run.progress == 100
    rows = {(r["endpoint"], r["retrieval"]): r for r in run.table}
    assert set(rows) == {("smollm2-local", True), ("smollm2-local", False), ("hospital", True), ("hospital", False)}
    assert rows[("hospital", True)]["citation_rate"] == 1.0
    assert rows[("hospital", False)]["citation_rate"] == 0.0
    assert all(r["failed"] == 0 and r["mean_latency_ms"] is not None for r in run.table)


def test_the_patient_page_queues_guidance_and_follows_it_until_done(
    client_for, clinician, outsider, patient, django_capture_on_commit_callbacks, monkeypatch
):
    from django.urls import reverse

    queued = []
    monkeypatch.setattr("prompting.tasks.run_guidance_task.delay", queued.append)
    with ScriptedServer(("json", 200, completion("Repeat BP within a week."), {})) as server:
        endpoint = openai_endpoint("hospital", server.base_url)
        client = client_for(clinician)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post(
                reverse("workspace:guidance", args=[patient.pk]),
                {"question": QUESTION, "endpoint": endpoint.pk},
                HTTP_HX_REQUEST="true",
            )
        guidance = GuidanceRequest.objects.get()
        assert queued == [guidance.pk]
        assert b"Waiting for a worker" in response.content
        assert b"hx-get" in response.content
        guidance_request_run(guidance_id=guidance.pk)  # what the worker does
    url = reverse("workspace:guidance-detail", args=[patient.pk, guidance.pk])
    done = client.get(url, HTTP_HX_REQUEST="true")
    assert b"Repeat BP within a week." in done.content
    assert b"hx-get" not in done.content
    assert b"Decision support" in done.content
    assert client_for(outsider).get(url).status_code == 404
