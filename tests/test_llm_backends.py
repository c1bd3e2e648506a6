"""The OpenAI-compatible backend: protocol, streaming, usage, and one retry loop that ends."""

import pytest

from prompting.llm import LLMError, build_backend
from prompting.llm.openai_http import OpenAICompatibleBackend
from tests.llm_servers import ScriptedServer, completion

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "BP 150/95 at 30 weeks?"}]


def backend(server, **kw):
    sleeps = []
    b = OpenAICompatibleBackend(base_url=server.base_url, model="fake-model", timeout=kw.pop("timeout", 5), backoff=0.01,
                                count_tokens=lambda text: len(text.split()), sleep=sleeps.append, **kw)
    return b, sleeps


def test_it_sends_a_chat_completion_and_reads_the_answer_and_usage():
    with ScriptedServer(("json", 200, completion("Repeat BP in a week."), {})) as server:
        b, _ = backend(server)
        result = b.generate(MESSAGES, max_tokens=50)
    assert result.text == "Repeat BP in a week." and result.model == "fake-model"
    assert result.usage == {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18, "counted": "server"}
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions" and sent["body"]["messages"] == MESSAGES and sent["body"]["max_tokens"] == 50


def test_usage_is_counted_locally_when_the_server_gives_none():
    with ScriptedServer(("json", 200, completion("four words right here", usage=False), {})) as server:
        result = backend(server)[0].generate(MESSAGES)
    assert result.usage["counted"] == "local" and result.usage["completion_tokens"] == 4


def test_it_streams_tokens_as_server_sent_events():
    tokens = []
    with ScriptedServer(("sse", "Check urine protein today"),) as server:
        result = backend(server)[0].generate(MESSAGES, on_token=tokens.append)
    assert "".join(tokens).strip() == "Check urine protein today" == result.text.strip()
    assert result.ttft_ms is not None and result.usage["completion_tokens"] == 4 and server.requests[0]["body"]["stream"] is True


def test_a_429_is_retried_after_the_time_the_server_asks_for():
    with ScriptedServer(("json", 429, {"error": {"message": "slow down"}}, {"Retry-After": "3"}),
                        ("json", 200, completion("ok"), {})) as server:
        b, sleeps = backend(server)
        result = b.generate(MESSAGES)
    assert result.text == "ok" and result.attempts == 2 and sleeps == [3.0]


def test_server_errors_are_retried_then_fail_with_a_clear_reason():
    with ScriptedServer(("json", 500, {"error": {"message": "overloaded"}}, {})) as server:
        b, sleeps = backend(server, max_attempts=3)
        with pytest.raises(LLMError) as caught:
            b.generate(MESSAGES)
    assert "500: overloaded after 3 attempts" in str(caught.value) and len(server.requests) == 3 and len(sleeps) == 2


def test_a_server_that_does_not_answer_in_time_fails_instead_of_hanging():
    with ScriptedServer(("sleep", 3),) as server:
        b, _ = backend(server, timeout=0.5, max_attempts=2)
        with pytest.raises(LLMError, match="did not answer within 0.5 s after 2 attempts"):
            b.generate(MESSAGES)


def test_malformed_json_is_a_clear_failure():
    with ScriptedServer(("raw", 200, b"{not json"),) as server:
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
    b = OpenAICompatibleBackend(base_url="http://127.0.0.1:9/v1", model="m", timeout=1, max_attempts=2, backoff=0, sleep=lambda s: None)
    with pytest.raises(LLMError, match="could not reach the server"):
        b.generate(MESSAGES)


def test_the_api_key_is_read_from_the_named_environment_variable(monkeypatch):
    monkeypatch.setenv("PARTNER_LLM_KEY", "sk-test-123")
    with ScriptedServer(("json", 200, completion("ok"), {})) as server:
        build_backend("openai", {"base_url": server.base_url, "model": "m", "api_key_env": "PARTNER_LLM_KEY"}).generate(MESSAGES)
    assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-123"


def test_a_misconfigured_endpoint_says_what_is_missing():
    with pytest.raises(LLMError, match="needs base_url"):
        build_backend("openai", {"model": "m"})
    with pytest.raises(LLMError, match="unknown backend kind"):
        build_backend("telepathy", {})
