"""Any OpenAI-compatible chat-completions server (vLLM, Ollama, llama.cpp server, OpenAI, Azure).

Plain httpx with one retry loop of our own (no SDK, so no hidden second loop): timeouts,
connection errors, 429 and 5xx are retried with exponential backoff that honours Retry-After;
anything else fails at once with the server's reason. Streaming uses server-sent events. Usage
comes from the server when it reports it, otherwise it is counted locally.

`timeout` bounds each wait for a byte; `deadline` bounds the whole call: every attempt, every wait
between attempts and every byte of a stream. A server that keeps the connection alive with a byte
now and then never times out a read, so at the deadline the call's connection is shut under it.
"""

from __future__ import annotations

import email.utils
import json
import os
import socket
import threading
import time
from collections.abc import Callable

import httpx

from .base import DEFAULT_DEADLINE, LLMError, LLMResult, Messages, TokenCallback, deadline_passed, read_chunks

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class _Deadline:
    """The end of one call. When it passes, the call's open connections are shut, which wakes a read
    blocked anywhere (headers, body, stream) at once; the call then fails with `deadline_passed`."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.passed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def trace(self, event: str, info: dict):
        """httpcore's trace hook: learn each connection's socket as soon as it is open."""
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            sock = info["return_value"].get_extra_info("socket")
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                    if self.passed:
                        _shut(sock)

    def _cut(self):
        with self._lock:
            self.passed = True
            for sock in self._sockets:
                _shut(sock)

    def __enter__(self):
        self._timer.start()
        return self

    def __exit__(self, *exc):
        self._timer.cancel()


def _shut(sock: socket.socket):
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's, under any TLS wrapper
    except OSError:
        pass  # already closed


class OpenAICompatibleBackend:
    kind = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "",
        timeout: float = 60.0,
        max_attempts: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 20.0,
        stream: bool = True,
        api_version: str = "",
        deadline: float = DEFAULT_DEADLINE,
        count_tokens: Callable[[str], int] | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.base_url = base_url.rstrip("/")
        self.model_name = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.deadline = float(deadline)
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.stream = stream
        self.api_version = api_version
        self.count_tokens = count_tokens
        self._transport = transport
        self._sleep = sleep

    def _headers(self) -> dict:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if key:
            headers["Authorization"] = f"Bearer {key}"
            headers["api-key"] = key  # Azure OpenAI reads this one
        return headers

    def _url(self) -> str:
        url = f"{self.base_url}/chat/completions"
        return f"{url}?api-version={self.api_version}" if self.api_version else url

    def generate(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
        on_token: TokenCallback | None = None,
    ) -> LLMResult:
        body = {"model": self.model_name, "messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        stream = self.stream and on_token is not None
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        started = time.monotonic()
        last_error: LLMError | None = None
        with _Deadline(self.deadline) as deadline:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    result = self._once(body, stream, on_token, started, deadline)
                    if deadline.passed:  # a stream the cut ended early is not an answer
                        raise deadline_passed(self.deadline)
                    result.attempts = attempt
                    return result
                except LLMError as error:
                    if deadline.passed or deadline.remaining() <= 0:
                        raise deadline_passed(self.deadline) from None
                    last_error = error
                    if not error.retryable or attempt == self.max_attempts:
                        break
                    delay = error.retry_after if error.retry_after is not None else self.backoff * 2 ** (attempt - 1)
                    delay = min(delay, self.max_backoff)
                    if delay >= deadline.remaining():
                        raise LLMError(
                            f"{error.reason}{_after(attempt)}; no time left within the {self.deadline:g} s deadline",
                            status=error.status,
                        ) from None
                    self._sleep(delay)
        assert last_error is not None
        raise LLMError(last_error.reason + _after(attempt), retryable=False, status=last_error.status)

    def _once(
        self, body: dict, stream: bool, on_token: TokenCallback | None, started: float, deadline: _Deadline
    ) -> LLMResult:
        wait = max(0.001, min(self.timeout, deadline.remaining()))  # no single wait outlives the call
        timeout = httpx.Timeout(wait, connect=min(10.0, wait))
        extensions = {"trace": deadline.trace}
        try:
            with httpx.Client(timeout=timeout, transport=self._transport) as client:
                if stream:
                    with client.stream(
                        "POST", self._url(), json=body, headers=self._headers(), extensions=extensions
                    ) as response:
                        self._check(response, streamed=True)
                        return self._read_stream(response, on_token, started)
                response = client.post(self._url(), json=body, headers=self._headers(), extensions=extensions)
                self._check(response)
                return self._read_json(response, started)
        except httpx.TimeoutException:
            raise LLMError(f"the server did not answer within {self.timeout:g} s", retryable=True) from None
        except httpx.TransportError as exc:
            raise LLMError(f"could not reach the server: {exc.__class__.__name__}", retryable=True) from None

    def _check(self, response: httpx.Response, streamed: bool = False):
        if response.status_code < 400:
            return
        if streamed:
            response.read()
        detail = ""
        try:
            detail = response.json().get("error", {}).get("message", "")
        except (ValueError, AttributeError):
            detail = response.text[:200]
        raise LLMError(
            f"the server answered {response.status_code}{': ' + detail if detail else ''}",
            retryable=response.status_code in RETRYABLE_STATUS,
            status=response.status_code,
            retry_after=_retry_after(response.headers.get("Retry-After")),
        )

    def _usage(self, usage: dict | None, messages_text: str, completion: str) -> dict:
        if usage and usage.get("completion_tokens") is not None:
            return {
                "prompt_tokens": usage.get("prompt_tokens"),
                "completion_tokens": usage.get("completion_tokens"),
                "total_tokens": usage.get("total_tokens"),
                "counted": "server",
            }
        if self.count_tokens is None:
            return {"counted": "unknown"}
        prompt, completion_tokens = self.count_tokens(messages_text), self.count_tokens(completion)
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
            "counted": "local",
        }

    def _read_json(self, response: httpx.Response, started: float) -> LLMResult:
        try:
            data = response.json()
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError):
            raise LLMError("the server's answer was not a chat completion (malformed JSON)", retryable=True) from None
        request = json.loads(response.request.content)
        return LLMResult(
            text=text,
            model=data.get("model") or self.model_name,
            finish_reason=choice.get("finish_reason") or "",
            usage=self._usage(data.get("usage"), _messages_text(request["messages"]), text),
            latency_ms=int((time.monotonic() - started) * 1000),
        )

    def _read_stream(self, response: httpx.Response, on_token: TokenCallback, started: float) -> LLMResult:
        streamed = read_chunks(_server_sent_events(response), on_token, started, self.model_name)
        request = json.loads(response.request.content)
        return LLMResult(
            text=streamed.text,
            model=streamed.model,
            usage=self._usage(streamed.usage, _messages_text(request["messages"]), streamed.text),
            latency_ms=int((time.monotonic() - started) * 1000),
            ttft_ms=streamed.ttft_ms,
            finish_reason=streamed.finish_reason,
        )


def _server_sent_events(response: httpx.Response):
    for line in response.iter_lines():
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            return
        try:
            yield json.loads(payload)
        except ValueError:
            raise LLMError("the server's stream was not valid JSON", retryable=True) from None


def _after(attempts: int) -> str:
    return f" after {attempts} attempt{'s' if attempts > 1 else ''}"


def _messages_text(messages: Messages) -> str:
    return "\n".join(m.get("content", "") for m in messages)
