"""Clinical guidance for retrieval: documents in, chunks embedded, passages found for a question."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max

from prompting.models import KnowledgeChunk, KnowledgeDocument
from prompting.pmlm.retrieval import VectorIndex, chunk_text, default_embedder, distinct_passages
from prompting.tasks import index_knowledge_document_task

WHO_ANC_DIR = Path(settings.BASE_DIR) / "demo_data" / "who_anc"
WHO_LICENCE = "CC BY-NC-SA 3.0 IGO (World Health Organization); demonstration knowledge only"
CHUNK_WORDS, CHUNK_OVERLAP = 80, 20


class KnowledgeError(ValueError):
    pass


def extract_text(name: str, data: bytes) -> str:
    """Text from an uploaded .txt, .md or .pdf file."""
    suffix = Path(name).suffix.lower()
    if suffix == ".pdf":
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(io.BytesIO(data))
            text = "\n".join(page.extract_text() or "" for page in reader.pages)
        except (PdfReadError, ValueError, KeyError) as exc:
            raise KnowledgeError(f"{name} is not a readable PDF: {exc}") from None
    elif suffix in (".txt", ".md", ".markdown", ""):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise KnowledgeError(f"{name} is not UTF-8 text") from None
    else:
        raise KnowledgeError(f"{name}: upload text (.txt), Markdown (.md) or PDF (.pdf)")
    if not text.strip():
        raise KnowledgeError(f"{name} contains no text (a scanned PDF needs OCR first)")
    return text


def knowledge_document_save(
    *, document: KnowledgeDocument, file_name: str = "", data: bytes | None = None, index_now: bool = False
) -> int | None:
    """A guidance document added or changed, from the admin or `load_knowledge`: its text is read from the
    file when one is given (KnowledgeError when it cannot be), it is saved, and its passages are indexed now
    (returning how many) or by a worker once the save commits."""
    if data is not None:
        document.text = extract_text(file_name, data)
    with transaction.atomic():
        document.save()
        if not index_now:
            transaction.on_commit(lambda: index_knowledge_document_task.delay(document.pk))
            return None
    return knowledge_document_index(document=document)


def knowledge_document_index(*, document: KnowledgeDocument) -> int:
    """(Re)chunk and embed one document; all-or-nothing."""
    if document.upload and not document.text:
        document.upload.open("rb")
        try:
            document.text = extract_text(document.upload.name, document.upload.read())
        finally:
            document.upload.close()
        KnowledgeDocument.objects.filter(pk=document.pk).update(text=document.text)
    return _index_documents([document])


def _index_documents(documents: list[KnowledgeDocument]) -> int:
    pieces = [
        (doc, n, text)
        for doc in documents
        for n, text in enumerate(chunk_text(f"{doc.title}. {doc.text}", words=CHUNK_WORDS, overlap=CHUNK_OVERLAP))
    ]
    vectors = default_embedder().embed([text for _, _, text in pieces])
    with transaction.atomic():
        KnowledgeChunk.objects.filter(document__in=documents).delete()
        KnowledgeChunk.objects.bulk_create(
            [
                KnowledgeChunk(document=doc, ordinal=n, text=text, embedding=vector.tobytes())
                for (doc, n, text), vector in zip(pieces, vectors)
            ],
            batch_size=500,
        )
    return len(pieces)


def who_rule_text(row: dict) -> tuple[str, str]:
    """A WHO decision-table row as a titled passage a clinician (and an LLM) can read."""
    # Many rows share a decision table; what the row decides tells them apart.
    title = (
        f"WHO {row.get('decision_id') or row.get('sheet', '')} — {row.get('output') or row.get('business_rule') or ''}"
    ).strip(" —")
    parts = []
    for label, key in (
        ("Rule", "business_rule"),
        ("When", "trigger"),
        ("Inputs", "inputs"),
        ("Decision", "output"),
        ("Action", "action"),
        ("Note", "annotation"),
        ("Reference", "references"),
    ):
        value = row.get(key)
        if isinstance(value, list):
            value = "; ".join(str(v) for v in value if v)
        if value:
            parts.append(f"{label}: {str(value).strip()}")
    return title[:300], "\n".join(parts)


def knowledge_load_who(path: Path | None = None) -> int:
    """Load the WHO antenatal decision tables shipped in demo_data (idempotent on decision id)."""
    path = path or WHO_ANC_DIR / "decision_rules.jsonl"
    documents = []
    for number, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        row = json.loads(line)
        title, text = who_rule_text(row)
        key = f"who-anc:{row.get('sheet', '')}:{row.get('decision_id', '')}:{number}"[:120]
        document, _ = KnowledgeDocument.objects.update_or_create(
            external_key=key,
            defaults={
                "title": title,
                "text": text,
                "source": "WHO/SRH/21.2 Digital adaptation kit for antenatal care: decision-support logic",
                "licence": WHO_LICENCE,
            },
        )
        documents.append(document)
    _index_documents(documents)
    return len(documents)


# --- search --------------------------------------------------------------------------------------------

_cache_lock = threading.Lock()
_cache: dict = {"signature": None, "index": None}


def _signature():
    active = KnowledgeChunk.objects.filter(document__active=True)
    return tuple(active.aggregate(n=Count("id"), last=Max("id"), updated=Max("document__updated_at")).values())


def knowledge_index() -> VectorIndex:
    """The in-memory matrix of every active chunk, rebuilt when the corpus changes."""
    signature = _signature()
    with _cache_lock:
        if _cache["signature"] != signature:
            rows = list(KnowledgeChunk.objects.filter(document__active=True).values_list("pk", "embedding"))
            vectors = (
                np.vstack([np.frombuffer(bytes(e), dtype=np.float32) for _, e in rows])
                if rows
                else np.zeros((0, 384), np.float32)
            )
            _cache.update(signature=signature, index=VectorIndex([pk for pk, _ in rows], vectors))
        return _cache["index"]


def knowledge_search(query: str, k: int = 3, min_score: float = 0.2) -> list[tuple[KnowledgeChunk, float]]:
    """The `k` best distinct passages for a query, best first: a chunk repeating a better one word
    for word is skipped and the next distinct chunk takes its place."""
    index = knowledge_index()
    if not index.keys or not query.strip():
        return []
    vector = default_embedder().embed([query])[0]
    wanted = 3 * k  # copies are rare: three candidates per passage almost always suffice
    while True:
        hits = index.search(vector, k=wanted, min_score=min_score)
        chunks = KnowledgeChunk.objects.select_related("document").in_bulk([h.key for h in hits])
        found = distinct_passages(((chunks[h.key], chunks[h.key].text, h.score) for h in hits if h.key in chunks), k)
        if len(found) >= k or len(hits) < wanted or wanted >= len(index.keys):
            return found
        wanted *= 4
