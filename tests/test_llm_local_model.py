"""The embedded model is read as the F16 copy of the shipped GGUF, made once under the var directory."""

import os

from prompting.llm import build_backend
from prompting.llm.local_model import F16_NAME, embedded_model_path, f16_copy
from prompting.pmlm.tokens import smollm2_gguf_path


def test_the_default_local_endpoint_reads_the_f16_copy_of_the_shipped_model_made_once(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    backend = build_backend("llamacpp", {})
    assert backend.model_path == str(tmp_path / "models" / F16_NAME)
    made = os.stat(backend.model_path)
    assert made.st_size > 2 * smollm2_gguf_path().stat().st_size  # two bytes a weight, not half of one
    assert embedded_model_path() == tmp_path / "models" / F16_NAME
    assert os.stat(backend.model_path).st_mtime_ns == made.st_mtime_ns  # kept, not made again
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.endswith(".part")]


def test_the_f16_copy_answers_like_a_model(tmp_path):
    path = f16_copy(smollm2_gguf_path(), tmp_path / F16_NAME)
    result = build_backend("llamacpp", {"model_path": str(path), "prefix_cache_mb": 0}).generate(
        [{"role": "user", "content": "Name one fruit."}], max_tokens=8, temperature=0.0
    )
    assert result.text.strip()


def test_a_named_model_file_is_read_as_it_is(tmp_path):
    assert build_backend("llamacpp", {"model_path": str(smollm2_gguf_path())}).model_path == str(smollm2_gguf_path())
