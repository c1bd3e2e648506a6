from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

Messages = list[dict]  # [{"role": "system"|"user"|"assistant", "content": str}]
TokenCallback = Callable[[str], None]

# Seconds one generate() call may take in all: the answer, or a clear failure, by then. An endpoint sets its own
# with `deadline` in its settings. A server can stall a call forever, so an HTTP endpoint has one by default, below
# the interactive lane's time limit. A local model has none unless its endpoint sets one: its token limit bounds it,
# a busy CPU only slows it, and on the interactive lane the task's time limit stops it.
DEFAULT_DEADLINE = 30.0


@dataclass
class LLMResult:
    text: str
    model: str
    usage: dict = field(
        default_factory=dict
    )  # prompt_tokens, completion_tokens, total_tokens, counted ("server"|"local")
    latency_ms: int = 0
    ttft_ms: int | None = None  # time to first token when streaming
    finish_reason: str = ""
    attempts: int = 1


class LLMError(RuntimeError):
    """A generation that failed, with a reason a clinician or curator can read."""

    def __init__(
        self, reason: str, *, retryable: bool = False, status: int | None = None, retry_after: float | None = None
    ):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def deadline_passed(seconds: float) -> LLMError:
    """The failure of a call that ran out of its deadline, in the words a clinician reads."""
    return LLMError(f"no complete answer within {seconds:g} s (the endpoint's deadline)")


class Backend(Protocol):
    kind: str
    model_name: str

    def generate(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
        on_token: TokenCallback | None = None,
    ) -> LLMResult: ...


@dataclass
class Streamed:
    text: str
    finish_reason: str
    ttft_ms: int | None
    usage: dict | None
    model: str


def read_chunks(events: Iterable[dict], on_token: TokenCallback, started: float, model: str = "") -> Streamed:
    """Consume OpenAI-style chat-completion chunks (llama.cpp and HTTP servers alike), passing on tokens."""
    parts, finish, ttft, usage = [], "", None, None
    for event in events:
        usage = event.get("usage") or usage
        model = event.get("model") or model
        for choice in event.get("choices") or []:
            token = (choice.get("delta") or {}).get("content") or ""
            if token:
                if ttft is None:
                    ttft = int((time.monotonic() - started) * 1000)
                parts.append(token)
                on_token(token)
            finish = choice.get("finish_reason") or finish
    return Streamed("".join(parts), finish, ttft, usage, model)
