"""LLM backends behind one interface (plain Python, no Django import).

    backend.generate(messages, max_tokens=…, temperature=…, on_token=callback) -> LLMResult

`llamacpp` runs a GGUF in-process (the embedded default, SmolLM2-135M-Instruct); `transformers`
runs a Hugging Face checkpoint directory; `openai` talks to any OpenAI-compatible HTTP server.
"""

from .base import LLMError, LLMResult  # noqa: F401
from .registry import build_backend  # noqa: F401
