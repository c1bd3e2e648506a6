"""The transformers backend on a tiny model made from a config (real code path, seconds to run)."""

import pytest

from prompting.llm import LLMError, build_backend


def test_it_generates_and_streams_from_a_checkpoint_directory(tiny_checkpoint):
    backend = build_backend("transformers", {"checkpoint": str(tiny_checkpoint), "device": "cpu"})
    messages = [{"role": "user", "content": "Hello"}]
    tokens = []
    streamed = backend.generate(messages, max_tokens=6, temperature=0, on_token=tokens.append)
    plain = backend.generate(messages, max_tokens=6, temperature=0)
    assert streamed.usage["prompt_tokens"] > 0
    assert streamed.model == tiny_checkpoint.name
    assert "".join(tokens).strip() == streamed.text == plain.text  # greedy: the same answer either way


def test_a_directory_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(LLMError, match="not a transformers checkpoint"):
        build_backend("transformers", {"checkpoint": str(tmp_path)})
