from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Messages = list[dict]  # [{"role": "system"|"user"|"assistant", "content": str}]
TokenCallback = Callable[[str], None]


@dataclass
class LLMResult:
    text: str
    model: str
    usage: dict = field(default_factory=dict)  # prompt_tokens, completion_tokens, total_tokens, counted ("server"|"local")
    latency_ms: int = 0
    ttft_ms: int | None = None  # time to first token when streaming
    finish_reason: str = ""
    attempts: int = 1


class LLMError(RuntimeError):
    """A generation that failed, with a reason a clinician or curator can read."""

    def __init__(self, reason: str, *, retryable: bool = False, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


class Backend(Protocol):
    kind: str
    model_name: str

    def generate(self, messages: Messages, *, max_tokens: int = 256, temperature: float = 0.2,
                 on_token: TokenCallback | None = None) -> LLMResult: ...
