"""Target-LLM answers cached by prompt hash, for reinforcement learning and evaluation.

During a refinement run the same prompt comes back often (the initial prompt of every example, a
policy that repeats itself), and a greedy answer to the same messages is the same answer. Each
answer is a small file named by the SHA-256 of the model, the settings and the messages, written
atomically, so concurrent runs and workers share it safely.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from .base import Messages


class CachedGenerator:
    def __init__(self, backend, directory: Path, *, max_tokens: int, temperature: float = 0.0, model_key: str = ""):
        self.backend, self.directory = backend, Path(directory)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.model_key = model_key or getattr(backend, "model_name", "") or backend.kind
        self.hits = self.misses = 0

    def key(self, messages: Messages) -> str:
        payload = {
            "model": self.model_key,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "messages": messages,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def generate(self, messages: Messages) -> str:
        key = self.key(messages)
        path = self.directory / key[:2] / f"{key}.txt"
        if path.exists():
            self.hits += 1
            return path.read_text(encoding="utf-8")
        self.misses += 1
        text = self.backend.generate(messages, max_tokens=self.max_tokens, temperature=self.temperature).text
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, delete=False) as handle:
            handle.write(text)
        os.replace(handle.name, path)
        return text
