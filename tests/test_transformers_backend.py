"""The transformers backend on a tiny model made from a config (real code path, seconds to run)."""

import shutil

import pytest
from django.conf import settings

from prompting.llm import LLMError, build_backend
from prompting.pmlm.tokens import build_tokenizer_file


@pytest.fixture
def tiny_checkpoint(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer_dir = settings.VAR_DIR / "models" / "smollm2-tokenizer"
    build_tokenizer_file(tokenizer_dir)  # SmolLM2's own tokenizer and chat template
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tokenizer_dir / name).exists():
            shutil.copy(tokenizer_dir / name, tmp_path / name)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    return tmp_path


def test_it_generates_and_streams_from_a_checkpoint_directory(tiny_checkpoint):
    backend = build_backend("transformers", {"checkpoint": str(tiny_checkpoint), "device": "cpu"})
    messages = [{"role": "user", "content": "Hello"}]
    tokens = []
    streamed = backend.generate(messages, max_tokens=6, temperature=0, on_token=tokens.append)
    plain = backend.generate(messages, max_tokens=6, temperature=0)
    assert streamed.usage["prompt_tokens"] > 0 and streamed.model == tiny_checkpoint.name
    assert "".join(tokens).strip() == streamed.text == plain.text  # greedy: the same answer either way


def test_a_directory_without_a_checkpoint_is_refused(tmp_path):
    with pytest.raises(LLMError, match="not a transformers checkpoint"):
        build_backend("transformers", {"checkpoint": str(tmp_path)})
