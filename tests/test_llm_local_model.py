"""The embedded model is read as a Q8_0 copy of the shipped GGUF, made once under the var directory."""

import os

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

from prompting.llm import build_backend
from prompting.llm.local_model import COPY_NAME, embedded_model_path, fast_copy
from prompting.pmlm.tokens import smollm2_gguf_path


def test_the_default_local_endpoint_reads_the_q8_0_copy_of_the_shipped_model_made_once(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    backend = build_backend("llamacpp", {})
    assert backend.model_path == str(tmp_path / "models" / COPY_NAME)
    made = os.stat(backend.model_path)
    assert made.st_size > smollm2_gguf_path().stat().st_size  # a byte a weight, not half of one
    assert embedded_model_path() == tmp_path / "models" / COPY_NAME
    assert os.stat(backend.model_path).st_mtime_ns == made.st_mtime_ns  # kept, not made again
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.endswith(".part")]


def test_no_weight_of_the_copy_moves_by_more_than_1_225_of_its_blocks_largest_or_a_tenth_of_the_shipped_step(tmp_path):
    copy = GGUFReader(fast_copy(smollm2_gguf_path(), tmp_path / COPY_NAME))
    shipped = {t.name: t for t in GGUFReader(smollm2_gguf_path()).tensors}
    checked = 0
    for tensor in copy.tensors:
        if tensor.tensor_type.name != "Q8_0":
            continue
        original = dequantize(shipped[tensor.name].data, shipped[tensor.name].tensor_type).reshape(-1, 32)
        widened = dequantize(tensor.data, tensor.tensor_type).reshape(-1, 32)
        moved = np.abs(widened - original)
        largest = np.abs(original).max(axis=1, keepdims=True)
        shipped_step = (original.max(axis=1, keepdims=True) - original.min(axis=1, keepdims=True)) / 15
        assert (moved <= largest / 225).all(), tensor.name  # 1/254 from the levels, a little from the F16 scale
        assert (moved <= shipped_step / 10).all(), tensor.name
        checked += 1
    assert checked >= 30  # every layer's matrices


def test_the_copy_answers_like_a_model(tmp_path):
    path = fast_copy(smollm2_gguf_path(), tmp_path / COPY_NAME)
    result = build_backend("llamacpp", {"model_path": str(path), "prefix_cache_mb": 0}).generate(
        [{"role": "user", "content": "Name one fruit."}], max_tokens=8, temperature=0.0
    )
    assert result.text.strip()


def test_a_named_model_file_is_read_as_it_is(tmp_path):
    assert build_backend("llamacpp", {"model_path": str(smollm2_gguf_path())}).model_path == str(smollm2_gguf_path())
