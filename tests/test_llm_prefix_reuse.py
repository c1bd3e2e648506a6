"""The local model reads a prompt's known start once: her workspace opening prefills it, and the
answer to her question is word for word the answer without reuse."""

import numpy as np
import pytest
from django.core.cache import cache

from patients.services import patient_import_bundle
from prompting.consultation import SYSTEM_MESSAGE, guidance_messages
from prompting.guidance import guidance_prefill
from prompting.llm import build_backend
from prompting.models import LLMEndpoint, PromptTemplate
from prompting.prompts import prompt_build, prompt_prefix
from tests import fhir_builders as fb

HER_RECORD = (
    "### Instructions\nYou advise an obstetric clinician.\n\n### Her record\n- Age 31; G2 P1; pregnant, 24+3 weeks.\n"
    "- Risk flags: Raised blood pressure (>= 140/90 mmHg) — 146/94 mmHg 3 days ago.\n"
    "- Latest results: Haemoglobin 10.2 g/dL (2 weeks ago); Weight 81 kg (3 days ago).\n\n"
    "### Patients like her\n- Care that helped them: Home blood pressure monitoring (rated 4.5).\n\n"
)
ANOTHER_RECORD = "### Instructions\nYou advise an obstetric clinician.\n\n### Her record\n- Age 22; not pregnant.\n\n"
QUESTION = "### Question\nWhat should we plan for her next visit?"


def local(**settings):
    return build_backend("llamacpp", settings)


def answer(backend, prompt_start: str) -> str:
    return backend.generate(guidance_messages(prompt_start + QUESTION), max_tokens=40, temperature=0.0).text


def prefill(backend, prompt_start: str) -> int:
    return backend.prefill([{"role": "system", "content": SYSTEM_MESSAGE}, {"role": "user", "content": prompt_start}])


def test_an_answer_after_her_prompt_was_prefilled_is_word_for_word_the_answer_without_reuse(monkeypatch):
    without_reuse = answer(local(prefix_cache_mb=0), HER_RECORD)
    backend = local(prefix_cache_mb=64)
    llama = backend.model()[0]
    llama.reset()
    llama.cache.cache_state.clear()  # nothing read before
    restored = []
    monkeypatch.setattr(
        llama, "load_state", lambda state, real=llama.load_state: (restored.append(state.n_tokens), real(state))
    )
    assert prefill(backend, HER_RECORD) > 100
    prefill(backend, ANOTHER_RECORD)  # another clinician's patient in between: her state comes back from the cache
    assert answer(backend, HER_RECORD) == without_reuse
    assert restored
    assert restored[0] > 100  # her prefix was restored, not read again
    assert answer(backend, HER_RECORD) == without_reuse  # and again, from the state its own answer left
    assert all(state.scores.shape[0] == 1 for state in llama.cache.cache_state.values())  # the states stay small


def test_prefix_states_are_bounded_in_memory_least_recently_used_out_first():
    from prompting.llm.llamacpp import _prefix_states

    class State:  # what a saved llama.cpp state carries, at a size of our choosing
        def __init__(self, size):
            self.llama_state_size, self.scores = size, np.zeros((512, 4), dtype=np.float32)

    states = _prefix_states(capacity_bytes=250)
    states[(1, 2, 3)] = State(100)
    states[(1, 2, 9)] = State(100)
    assert states[(1, 2, 3, 4)] is states.cache_state[(1, 2, 3)]  # the longest prefix, now the most recent
    states[(5, 6)] = State(100)
    assert list(states.cache_state) == [(1, 2, 3), (5, 6)]
    assert states.cache_size <= 250
    assert all(s.scores.shape == (1, 4) for s in states.cache_state.values())


def test_prefix_reuse_can_be_turned_off():
    assert local(prefix_cache_mb=0).prefill([{"role": "user", "content": "Hello"}]) == 0


@pytest.fixture
def her(organisation):
    PromptTemplate.objects.get_or_create(version="pmlm-1", defaults={"active": True})
    assert patient_import_bundle(organisation=organisation, bundle=fb.small_bundle("pat-k"), source="test").ok
    return organisation.patients.get(external_id="pat-k")


def test_her_prompt_starts_with_the_prefix_read_when_her_workspace_opens(her):
    prefix = prompt_prefix(patient=her)
    prompt = prompt_build(
        patient=her, question="What should we plan for her next visit?", knowledge=["[WHO] Aspirin from 12 weeks."]
    )
    assert prompt.text.startswith(prefix)
    assert "### Guidance sources" not in prefix
    assert "Question" not in prefix
    assert "### Her record" in prefix
    assert her.family_name
    assert her.family_name not in prefix


def test_prefilling_reads_her_prompt_start_on_a_local_model_and_nothing_elsewhere(her):
    local_endpoint = LLMEndpoint.objects.create(name="local-prefill", kind="llamacpp", settings={"prefix_cache_mb": 64})
    assert guidance_prefill(patient=her, endpoint=local_endpoint) > 100
    remote = LLMEndpoint.objects.create(
        name="remote", kind="openai", settings={"base_url": "http://127.0.0.1:9", "model": "m"}
    )
    assert guidance_prefill(patient=her, endpoint=remote) == 0  # nothing sent: a server keeps its own prefix cache


@pytest.mark.parametrize("enabled", [True, False])
def test_opening_her_record_queues_a_prefill_on_the_interactive_lane_that_expires(
    her, client_for, clinician, settings, monkeypatch, django_capture_on_commit_callbacks, enabled
):
    settings.PMLM_PREFILL_ON_OPEN = enabled
    LLMEndpoint.objects.update(is_default=False)
    LLMEndpoint.objects.create(name="local-default", kind="llamacpp", is_default=True)
    cache.clear()
    queued = []
    monkeypatch.setattr(
        "prompting.tasks.prefill_guidance_task.apply_async", lambda args, **options: queued.append((args, options))
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert client_for(clinician).get(f"/patients/{her.pk}/").status_code == 200
    assert queued == (
        [((her.pk,), {"kwargs": {}, "expires": settings.PMLM_PREFILL_EXPIRES_SECONDS, "retry": False})]
        if enabled
        else []
    )


def test_opening_her_record_again_at_once_queues_no_second_prefill_and_a_broken_broker_never_fails_the_page(
    her, client_for, clinician, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.PMLM_PREFILL_ON_OPEN = True
    LLMEndpoint.objects.update(is_default=False)
    LLMEndpoint.objects.create(name="local-default", kind="llamacpp", is_default=True)
    cache.clear()
    calls = []

    def broken(args, **options):
        calls.append(args)
        raise ConnectionError("broker down")

    monkeypatch.setattr("prompting.tasks.prefill_guidance_task.apply_async", broken)
    client = client_for(clinician)
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.get(f"/patients/{her.pk}/").status_code == 200
    assert calls == [(her.pk,)]


def test_the_prefill_task_takes_the_interactive_lane():
    from pmlm_site.lanes import INTERACTIVE, TASK_LANES

    assert TASK_LANES["prompting.tasks.prefill_guidance_task"] == INTERACTIVE


def test_with_room_for_the_sources_her_prompt_starts_as_the_prefilled_one_though_her_record_is_cut(her):
    """A budget her whole record does not fit beside the room kept for the sources: her record is cut the same way
    for the prefill and for every question, whatever passages the question brings."""
    from prompting.prompts import count_tokens

    record = count_tokens(prompt_prefix(patient=her))
    PromptTemplate.objects.filter(active=True).update(token_budget=record + 40, sources_room=70)
    prefix = prompt_prefix(patient=her)
    assert count_tokens(prefix) < record  # her record gave way to the room
    for question, passages in (
        ("What should we plan for her next visit?", ["[WHO] Iron and folic acid daily.", "[WHO] Weigh her."]),
        ("Is her blood pressure a concern?", ["[WHO] " + "Blood pressure at every visit. " * 12]),
    ):
        prompt = prompt_build(patient=her, question=question, knowledge=passages)
        assert prompt.text.startswith(prefix)
        assert count_tokens(prompt.text[len(prefix) :]) <= 70  # the sources and the question fit their room


# --- read ahead while a question is typed: her prompt up to the question's words ----------------------------------

SOURCES = (
    "### Guidance sources\n[1] WHO recommends low-dose aspirin from 12 weeks for women at high risk of pre-eclampsia.\n"
    "[2] Daily oral iron and folic acid supplementation is recommended for pregnant women.\n\n### Question\n"
)


def test_her_prompt_for_a_question_is_what_was_read_while_it_was_typed_then_the_question(her):
    passages = ["WHO recommends low-dose aspirin from 12 weeks.", "Daily oral iron is recommended."]
    question = "What should we plan for her next visit, given her blood pressure?"
    typed = prompt_prefix(patient=her, knowledge=passages)
    prompt = prompt_build(patient=her, question=question, knowledge=passages)
    assert prompt.text == typed + question
    assert typed.startswith(prompt_prefix(patient=her))  # what her workspace read when it opened comes first
    assert "[2] Daily oral iron" in typed and typed.endswith("### Question\n")


def test_an_answer_after_its_sources_were_read_while_typing_is_word_for_word_and_reads_only_the_question():
    without_reuse = answer(local(prefix_cache_mb=0), HER_RECORD + SOURCES.removesuffix("### Question\n"))
    backend = local(prefix_cache_mb=64)
    llama = backend.model()[0]
    llama.reset()
    llama.cache.cache_state.clear()
    prefill(backend, HER_RECORD)  # her workspace opened
    prefill(backend, ANOTHER_RECORD)  # another clinician's patient in between
    prefill(backend, HER_RECORD + SOURCES)  # her question's sources, read while it was typed
    read = []
    real_eval = llama.eval
    llama.eval = lambda tokens: (read.append(len(tokens)), real_eval(tokens))[1]
    try:
        assert answer(backend, HER_RECORD + SOURCES.removesuffix("### Question\n")) == without_reuse
    finally:
        del llama.eval
    question_tokens = len(llama.tokenize(QUESTION.encode(), add_bos=False))
    # Asking read the question, the chat template's closing tokens and the few always read again, not her prompt.
    assert read[0] <= question_tokens + 40


def test_typing_a_question_queues_a_prefill_of_its_sources_by_id_and_never_sends_what_she_typed(
    her, knowledge, client_for, clinician, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.PMLM_PREFILL_ON_OPEN = True
    LLMEndpoint.objects.update(is_default=False)
    local_endpoint = LLMEndpoint.objects.create(name="local-default", kind="llamacpp", is_default=True)
    cache.clear()
    queued = []
    monkeypatch.setattr(
        "prompting.tasks.prefill_guidance_task.apply_async", lambda args, **options: queued.append((args, options))
    )
    client = client_for(clinician)
    url = f"/patients/{her.pk}/guidance/prefill/"
    form = {"question": "Should she take aspirin for pre-eclampsia", "use_retrieval": "on", "at": "2026-03-01"}
    assert client.post(url, form).status_code == 202
    assert client.post(url, form).status_code == 202  # again, from another tab
    assert len(queued) == 1  # queued once for the same sources
    (args, options) = queued[0]
    assert args == (her.pk,)
    assert options["kwargs"]["at"] == "2026-03-01" and options["kwargs"]["endpoint_id"] == local_endpoint.pk
    assert options["kwargs"]["chunk_ids"] and all(isinstance(pk, int) for pk in options["kwargs"]["chunk_ids"])
    assert "aspirin" not in repr(queued).lower()  # what she is typing stays in the page and the web process
    assert options["expires"] == settings.PMLM_PREFILL_EXPIRES_SECONDS and options["retry"] is False
    # Nothing to read ahead: too few words, no guidance sources asked for.
    assert client.post(url, {**form, "question": "Aspirin"}).status_code == 204
    assert client.post(url, {"question": form["question"], "at": "2026-03-01"}).status_code == 204
    # A date outside the consultation range: asking will say so; reading ahead quietly does nothing.
    assert client.post(url, {**form, "at": "1850-01-01"}).status_code == 204
    # A form that is not one (no question, a date that is not a date): refused, nothing queued.
    assert client.post(url, {"use_retrieval": "on"}).status_code == 400
    assert client.post(url, {**form, "at": "the first of March"}).status_code == 400
    assert len(queued) == 1


def test_only_her_clinicians_can_have_her_prompt_read_ahead(
    her, foreign_patient, client_for, clinician, outsider, partner, monkeypatch
):
    queued = []
    monkeypatch.setattr(
        "prompting.tasks.prefill_guidance_task.apply_async", lambda args, **options: queued.append((args, options))
    )
    form = {"question": "Should she take aspirin for pre-eclampsia?", "use_retrieval": "on"}
    assert client_for(outsider).post(f"/patients/{her.pk}/guidance/prefill/", form).status_code == 404
    assert client_for(clinician).post(f"/patients/{foreign_patient.pk}/guidance/prefill/", form).status_code == 404
    assert client_for(partner).post(f"/patients/{her.pk}/guidance/prefill/", form).status_code == 403
    assert queued == []


def test_the_prefill_task_reads_her_prompt_through_the_sources_it_is_given(her, knowledge):
    from prompting.models import KnowledgeChunk
    from prompting.tasks import prefill_guidance_task

    endpoint = LLMEndpoint.objects.create(name="local-prefill", kind="llamacpp", settings={"prefix_cache_mb": 64})
    chunk_ids = list(KnowledgeChunk.objects.order_by("pk").values_list("pk", flat=True)[:2])
    start_only = prefill_guidance_task(her.pk, endpoint_id=endpoint.pk)
    with_sources = prefill_guidance_task(her.pk, chunk_ids=[*chunk_ids, 10**9], endpoint_id=endpoint.pk)
    assert with_sources > start_only + 20  # a deleted passage is left out, the others read
    assert prefill_guidance_task(her.pk, chunk_ids=chunk_ids, endpoint_id=10**9) == 0  # an endpoint gone since
