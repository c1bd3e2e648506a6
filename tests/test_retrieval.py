"""Knowledge retrieval: chunks with overlap, MiniLM embeddings, an index that follows the corpus."""

import pytest

from prompting.knowledge import (
    KnowledgeError,
    extract_text,
    knowledge_document_index,
    knowledge_load_who,
    knowledge_search,
)
from prompting.models import KnowledgeChunk, KnowledgeDocument
from prompting.pmlm.retrieval import chunk_text


def minimal_pdf(text: str) -> bytes:
    """A one-page PDF with a text line and a correct cross-reference table."""
    stream = f"BT /F1 12 Tf 20 100 Td ({text}) Tj ET".encode()
    objects = [
        b"<</Type/Catalog/Pages 2 0 R>>",
        b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
        b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 400 144]/Contents 4 0 R/Resources<</Font<</F1 5 0 R>>>>>>",
        b"<</Length " + str(len(stream)).encode() + b">>stream\n" + stream + b"\nendstream",
        b"<</Type/Font/Subtype/Type1/BaseFont/Helvetica>>",
    ]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj".encode() + body + b"endobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer<</Size {len(objects) + 1}/Root 1 0 R>>\nstartxref\n{xref}\n%%EOF".encode()
    return bytes(out)


def test_chunks_overlap_so_no_statement_loses_its_context():
    text = " ".join(f"Statement {i} about antenatal care." for i in range(100))
    chunks = chunk_text(text, words=40, overlap=10)
    assert len(chunks) > 5
    assert all(len(c.split()) <= 50 for c in chunks)
    assert chunks[1].split()[:10] == chunks[0].split()[-10:]


def test_text_markdown_and_pdf_uploads_are_read_and_other_files_refused():
    assert "iron and folic acid" in extract_text(
        "guide.pdf", minimal_pdf("Give iron and folic acid daily in pregnancy.")
    )
    assert extract_text("notes.md", "# Aspirin\nFrom 12 weeks.".encode()) == "# Aspirin\nFrom 12 weeks."
    with pytest.raises(KnowledgeError, match="not a readable PDF"):
        extract_text("broken.pdf", b"not a pdf")
    with pytest.raises(KnowledgeError, match="upload text"):
        extract_text("table.xlsx", b"PK")
    with pytest.raises(KnowledgeError, match="no text"):
        extract_text("empty.txt", b"   ")


@pytest.mark.django_db
def test_the_who_tables_load_once_and_answer_clinical_questions():
    loaded = knowledge_load_who()
    assert loaded == 158
    assert KnowledgeDocument.objects.count() == 158
    chunks = KnowledgeChunk.objects.count()
    assert knowledge_load_who() == 158
    assert KnowledgeChunk.objects.count() == chunks  # idempotent
    hits = knowledge_search("Haemoglobin is low: what iron dose for anaemia in pregnancy?", k=3)
    assert hits
    assert any("anaemia" in c.text.lower() or "iron" in c.text.lower() for c, _ in hits)
    hits = knowledge_search("High blood pressure with protein in urine after 20 weeks", k=3)
    assert any("pre-eclampsia" in c.text.lower() or "hypertension" in c.text.lower() for c, _ in hits)


@pytest.mark.django_db
def test_the_index_follows_the_corpus_as_curators_change_it():
    doc = KnowledgeDocument.objects.create(
        title="Tick bites", text="Remove a tick with fine tweezers close to the skin."
    )
    knowledge_document_index(document=doc)
    assert knowledge_search("how do I remove a tick", k=1)[0][0].document == doc
    doc.active = False
    doc.save()
    assert all(c.document != doc for c, _ in knowledge_search("how do I remove a tick", k=3))
