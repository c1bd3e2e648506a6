"""In-process GGUF through llama-cpp-python: the embedded default (SmolLM2-135M-Instruct).

A model is loaded once per process and per file, then shared; llama.cpp contexts are not
thread-safe, so generations on one model take turns. A generation that runs past the deadline
its endpoint sets (waiting for its turn included) is stopped at the next token.

Prefix reuse: the model's state after each prompt is kept, keyed by its tokens, in a cache
bounded in bytes (least recently used out first) and shared by every request the process
serves. A prompt that starts like one read before (the instructions, her record and her peers,
read when the clinician opened her workspace) restores that state and reads only the rest. The
answer is the same as without reuse (tests/test_llm_prefix_reuse.py).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from functools import lru_cache
from pathlib import Path

from .base import LLMError, LLMResult, Messages, TokenCallback, deadline_passed, read_chunks

DEFAULT_PREFIX_CACHE_MB = 256  # ~25 MB per 1,000-token state of SmolLM2-135M: about ten patients' prefixes


def _prefix_states(capacity_bytes: int):
    from llama_cpp.llama_cache import LlamaRAMCache

    class PrefixStates(LlamaRAMCache):
        """Model states by token prefix, bounded in bytes. llama-cpp-python copies the logits rows of a
        whole batch into each state (~100 MB, not counted in the bound); a restored state always decodes
        its last token again, so those rows are never read, and one is kept."""

        def __setitem__(self, key, value):
            value.scores = value.scores[:1].copy()
            super().__setitem__(key, value)

    return PrefixStates(capacity_bytes=capacity_bytes)


# A prompt's last tokens are always read again together: logits from a one-token decode can differ in the
# last bits from those of the same token decoded in a batch, enough to change a greedy answer to a repeated
# question. Read in a batch, warm and cold prompts give the same answer (tests/test_llm_prefix_reuse.py).
MIN_FRESH_TOKENS = 32


def _llama_class():
    from llama_cpp import Llama

    class ReusingLlama(Llama):
        def generate(self, tokens, *args, **kwargs):
            tokens = list(tokens)
            keep = max(0, len(tokens) - MIN_FRESH_TOKENS)
            if self.n_tokens > keep and Llama.longest_token_prefix(self._input_ids.tolist(), tokens) > keep:
                if self._ctx.kv_cache_seq_rm(-1, keep, -1):  # forget from there on; the library reuses the rest
                    self.n_tokens, self._requires_eval = keep, True
                else:
                    self.reset()
            return super().generate(tokens, *args, **kwargs)

    return ReusingLlama


@lru_cache(maxsize=4)
def _load(path: str, n_ctx: int, n_threads: int, seed: int, prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB):
    # No flash attention: it reads a prompt ~10% faster on a CPU, but its sums depend on how the prompt is split
    # into batches, so an answer after prefix reuse could differ from the answer without (bench/llm.py: 3 of 5).
    llama = _llama_class()(model_path=path, n_ctx=n_ctx, n_threads=n_threads, seed=seed, verbose=False)
    if prefix_cache_mb > 0:
        llama.set_cache(_prefix_states(prefix_cache_mb * 1024 * 1024))
    return llama, threading.Lock()


# Free loaded models before the interpreter tears its modules down (llama.cpp's finalisers need them).
atexit.register(lambda: _load.cache_clear())


def default_threads() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


class _PastDeadline(Exception):
    pass


def _until(events, at: float | None):
    """The chunks of a streamed completion until the deadline; closing the stream stops llama.cpp generating."""
    for event in events:
        if at is not None and time.monotonic() >= at:
            events.close()
            raise _PastDeadline()
        yield event


class LlamaCppBackend:
    kind = "llamacpp"

    def __init__(
        self,
        *,
        model_path: str | Path,
        n_ctx: int = 2048,
        n_threads: int | None = None,
        seed: int = 7,
        repeat_penalty: float = 1.1,
        deadline: float | None = None,
        prefix_cache_mb: int = DEFAULT_PREFIX_CACHE_MB,
    ):
        self.model_path = str(model_path)
        if not Path(self.model_path).exists():
            raise LLMError(f"the model file {self.model_path} does not exist")
        self.model_name = Path(self.model_path).name
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.seed = seed
        # Small models fall into loops ("She should also discuss… She should also discuss…") without one.
        self.repeat_penalty = float(repeat_penalty)
        self.deadline = float(deadline) if deadline else None
        self.prefix_cache_mb = max(0, int(prefix_cache_mb))

    def model(self):
        return _load(self.model_path, self.n_ctx, self.n_threads, self.seed, self.prefix_cache_mb)

    def prefill(self, messages: Messages) -> int:
        """Read a prompt's start now, so that a later prompt beginning the same way reads only the rest.
        Returns how many prompt tokens were read (0 when prefix reuse is off)."""
        if not self.prefix_cache_mb:
            return 0
        llama, lock = self.model()
        with lock:
            try:
                result = llama.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0, seed=self.seed)
            except ValueError as exc:
                raise LLMError(f"the local model refused the request: {exc}") from None
        return int(result["usage"]["prompt_tokens"])

    def count_tokens(self, text: str) -> int:
        llama, _ = self.model()
        return len(llama.tokenize(text.encode(), add_bos=False, special=False))

    def generate(
        self,
        messages: Messages,
        *,
        max_tokens: int = 256,
        temperature: float = 0.2,
        on_token: TokenCallback | None = None,
    ) -> LLMResult:
        started = time.monotonic()
        llama, lock = self.model()
        with lock:
            try:
                # Always streamed, whole answers too: between two tokens is where a deadline can stop it.
                events = llama.create_chat_completion(
                    messages=messages,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    seed=self.seed,
                    repeat_penalty=self.repeat_penalty,
                    stream=True,
                )
                until = started + self.deadline if self.deadline else None
                streamed = read_chunks(_until(events, until), on_token or (lambda token: None), started)
            except ValueError as exc:  # e.g. the prompt does not fit the context window
                raise LLMError(f"the local model refused the request: {exc}") from None
            except _PastDeadline:
                raise deadline_passed(self.deadline) from None
            text, finish = streamed.text, streamed.finish_reason
            ttft = streamed.ttft_ms if on_token is not None else None
            prompt_tokens = sum(len(llama.tokenize(m["content"].encode(), add_bos=False)) for m in messages)
            completion_tokens = len(llama.tokenize(text.encode(), add_bos=False)) if text else 0
            usage = {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            }
        return LLMResult(
            text=text.strip(),
            model=self.model_name,
            usage={**usage, "counted": "local"},
            latency_ms=int((time.monotonic() - started) * 1000),
            ttft_ms=ttft,
            finish_reason=finish,
        )
