"""The OpenAI-compatible backend: protocol, streaming, usage, and one retry loop that ends; every
backend's deadline on a whole call."""

import time

import pytest

from prompting.llm import LLMError, build_backend
from prompting.llm.openai_http import OpenAICompatibleBackend
from tests.llm_servers import ScriptedServer, completion

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "BP 150/95 at 30 weeks?"}]


def backend(server, **kw):
    sleeps = []
    b = OpenAICompatibleBackend(
        base_url=server.base_url,
        model="fake-model",
        timeout=kw.pop("timeout", 5),
        backoff=0.01,
        count_tokens=lambda text: len(text.split()),
        sleep=sleeps.append,
        **kw,
    )
    return b, sleeps


def test_it_sends_a_chat_completion_and_reads_the_answer_and_usage():
    with ScriptedServer(("json", 200, completion("Repeat BP in a week."), {})) as server:
        b, _ = backend(server)
        result = b.generate(MESSAGES, max_tokens=50)
    assert result.text == "Repeat BP in a week."
    assert result.model == "fake-model"
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "counted": "server"}
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["body"]["messages"] == MESSAGES
    assert sent["body"]["max_tokens"] == 50


def test_usage_is_counted_locally_when_the_server_gives_none():
    with ScriptedServer(("json", 200, completion("four words right here", usage=False), {})) as server:
        result = backend(server)[0].generate(MESSAGES)
    assert result.usage["counted"] == "local"
    assert result.usage["completion_tokens"] == 4


def test_it_streams_tokens_as_server_sent_events():
    tokens = []
    with ScriptedServer(
        ("sse", "Check urine protein today"),
    ) as server:
        result = backend(server)[0].generate(MESSAGES, on_token=tokens.append)
    assert "".join(tokens).strip() == "Check urine protein today" == result.text.strip()
    assert result.ttft_ms is not None
    assert result.usage["completion_tokens"] == 4
    assert server.requests[0]["body"]["stream"] is True


def test_a_429_is_retried_after_the_time_the_server_asks_for():
    with ScriptedServer(
        ("json", 429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}), ("json", 200, completion("ok"), {})
    ) as server:
        b, sleeps = backend(server)
        result = b.generate(MESSAGES)
    assert result.text == "ok"
    assert result.attempts == 2
    assert sleeps == [3.0]


def test_server_errors_are_retried_then_fail_with_a_clear_reason():
    with ScriptedServer(("json", 500, {"error": {"message": "overloaded"}}, {})) as server:
        b, sleeps = backend(server, max_attempts=3)
        with pytest.raises(LLMError) as caught:
            b.generate(MESSAGES)
    assert "500: overloaded after 3 attempts" in str(caught.value)
    assert len(server.requests) == 3
    assert len(sleeps) == 2


def test_a_server_that_does_not_answer_in_time_fails_instead_of_hanging():
    with ScriptedServer(
        ("sleep", 3),
    ) as server:
        b, _ = backend(server, timeout=0.5, max_attempts=2)
        with pytest.raises(LLMError, match="did not answer within 0.5 s after 2 attempts"):
            b.generate(MESSAGES)


@pytest.mark.parametrize(
    "reply, streamed",
    [(("drip", 0.3), True), (("drip", 0.3), False), (("drip-headers", 0.3), False)],
    ids=["a stream of keep-alives", "a JSON body of blanks", "headers a line at a time"],
)
def test_a_server_that_keeps_dripping_bytes_is_cut_off_at_the_call_deadline(reply, streamed):
    # Every read gets a byte well within the 1 s timeout, so only a deadline on the whole call ends it.
    with ScriptedServer(reply) as server:
        b, _ = backend(server, timeout=1, deadline=2, max_attempts=3)
        started = time.monotonic()
        with pytest.raises(LLMError, match="no complete answer within 2 s") as caught:
            b.generate(MESSAGES, on_token=(lambda token: None) if streamed else None)
        elapsed = time.monotonic() - started
    assert 2 <= elapsed < 4, f"the call ended after {elapsed:.1f} s"
    assert not caught.value.retryable
    assert len(server.requests) == 1


def test_retries_and_their_waits_count_against_the_deadline():
    with ScriptedServer(("json", 503, {"error": {"message": "busy"}}, {"Retry-After": "30"})) as server:
        b, sleeps = backend(server, deadline=5, max_attempts=3)
        with pytest.raises(LLMError, match="503: busy after 1 attempt; no time left within the 5 s deadline"):
            b.generate(MESSAGES)
    assert sleeps == []
    assert len(server.requests) == 1


def test_the_deadline_is_set_per_endpoint_and_has_a_default():
    from prompting.llm.base import DEFAULT_DEADLINE

    assert build_backend("openai", {"base_url": "http://x/v1", "model": "m", "deadline": 90}).deadline == 90
    assert build_backend("openai", {"base_url": "http://x/v1", "model": "m"}).deadline == DEFAULT_DEADLINE
    # A local model cannot stall like a server: only a deadline its endpoint sets stops it.
    assert build_backend("llamacpp", {}).deadline is None
    assert build_backend("llamacpp", {"deadline": 20}).deadline == 20


def test_malformed_json_is_a_clear_failure():
    with ScriptedServer(
        ("raw", 200, b"{not json"),
    ) as server:
        b, _ = backend(server, max_attempts=2)
        with pytest.raises(LLMError, match="malformed JSON"):
            b.generate(MESSAGES)


def test_a_client_error_is_not_retried():
    with ScriptedServer(("json", 400, {"error": {"message": "context length exceeded"}}, {})) as server:
        b, _ = backend(server)
        with pytest.raises(LLMError, match="400: context length exceeded after 1 attempt$"):
            b.generate(MESSAGES)
    assert len(server.requests) == 1


def test_an_unreachable_server_fails_with_its_reason():
    b = OpenAICompatibleBackend(
        base_url="http://127.0.0.1:9/v1", model="m", timeout=1, max_attempts=2, backoff=0, sleep=lambda s: None
    )
    with pytest.raises(LLMError, match="could not reach the server"):
        b.generate(MESSAGES)


def test_the_api_key_is_read_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("PARTNER_LLM_KEY", "sk-test-123")
    with ScriptedServer(("json", 200, completion("ok"), {})) as server:
        build_backend("openai", {"base_url": server.base_url, "model": "m", "api_key_env": "PARTNER_LLM_KEY"}).generate(
            MESSAGES
        )
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


def test_a_misconfigured_endpoint_says_what_is_missing():
    with pytest.raises(LLMError, match="needs base_url"):
        build_backend("openai", {"model": "m"})
    with pytest.raises(LLMError, match="unknown backend kind"):
        build_backend("telepathy", {})


LONG = [{"role": "user", "content": "Count from 1 to 1000, one number per line."}]


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_the_local_gguf_model_stops_at_its_deadline_and_answers_the_next_call(streamed):
    backend = build_backend("llamacpp", {"deadline": 0.5})
    backend.model()  # loaded once per process, before the clock starts
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"no complete answer within 0\.5 s"):
        backend.generate(LONG, max_tokens=1500, temperature=0, on_token=(lambda token: None) if streamed else None)
    assert time.monotonic() - started < 30  # generous: reading the prompt cannot be stopped, a busy CPU reads it slowly
    assert (
        build_backend("llamacpp", {}).generate(MESSAGES, max_tokens=8, temperature=0).text
    )  # the model is still usable


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_transformers_checkpoint_stops_at_its_deadline(tiny_checkpoint, streamed):
    backend = build_backend("transformers", {"checkpoint": str(tiny_checkpoint), "device": "cpu", "deadline": 0.5})
    backend.generate(LONG, max_tokens=1, temperature=0)  # loaded once per process, before the clock starts
    started = time.monotonic()
    with pytest.raises(LLMError, match=r"no complete answer within 0\.5 s"):
        backend.generate(LONG, max_tokens=3000, temperature=0, on_token=(lambda token: None) if streamed else None)
    assert time.monotonic() - started < 30  # generous, on a busy CPU
