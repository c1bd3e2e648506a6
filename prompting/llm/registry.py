"""Build a backend from an endpoint's kind and settings."""

from __future__ import annotations

from .base import LLMError

KINDS = ("llamacpp", "transformers", "openai")


def build_backend(kind: str, settings: dict, *, count_tokens=None):
    settings = dict(settings or {})
    if kind == "llamacpp":
        from .llamacpp import LlamaCppBackend  # lazily: llama.cpp's library loads only for a local endpoint

        if not settings.get("model_path"):
            from .local_model import embedded_model_path  # the shipped GGUF, widened once for fast prompt reading

            settings["model_path"] = str(embedded_model_path())
        allowed = (
            "model_path",
            "n_ctx",
            "n_threads",
            "seed",
            "repeat_penalty",
            "deadline",
            "prefix_cache_mb",
        )
        return LlamaCppBackend(**{k: v for k, v in settings.items() if k in allowed})
    if kind == "transformers":
        from .transformers_backend import TransformersBackend

        return TransformersBackend(
            **{k: v for k, v in settings.items() if k in ("checkpoint", "device", "seed", "deadline")}
        )
    if kind == "openai":
        from .openai_http import OpenAICompatibleBackend

        allowed = (
            "base_url",
            "model",
            "api_key_env",
            "timeout",
            "max_attempts",
            "backoff",
            "max_backoff",
            "stream",
            "api_version",
            "deadline",
        )
        missing = [k for k in ("base_url", "model") if not settings.get(k)]
        if missing:
            raise LLMError(f"an OpenAI-compatible endpoint needs {' and '.join(missing)} in its settings")
        return OpenAICompatibleBackend(**{k: v for k, v in settings.items() if k in allowed}, count_tokens=count_tokens)
    raise LLMError(f"unknown backend kind {kind!r}; one of {', '.join(KINDS)}")
