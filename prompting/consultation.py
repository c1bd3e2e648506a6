"""What is sent to an LLM for a question about her: the system message, her personalised prompt
grounded in retrieved guidance passages, and the answer instruction. Guidance requests, evaluations
and refinement runs all send exactly this, so their answers can be compared and cached together."""

from __future__ import annotations

import time
from datetime import date

from patients import models as pm
from prompting.knowledge import knowledge_search
from prompting.pmlm.retrieval import default_embedder, passages_as_read
from prompting.pmlm.risk import risk_flags
from prompting.pmlm.state import current_pregnancy
from prompting.prompts import count_tokens, prompt_build
from prompting.selectors import patient_history

SYSTEM_MESSAGE = (
    "You are a careful obstetrics and gynaecology decision-support assistant. Answer the clinician's question "
    "for this patient using only the context given. Cite guidance sources as [1], [2]."
)
ANSWER_INSTRUCTION = "Answer for the clinician in at most 200 words, as short bullet points."
RETRIEVED_PASSAGES = 3


def guidance_messages(prompt_text: str) -> list[dict]:
    """What the LLM receives for a prompt: the same for guidance requests and for scoring refinements."""
    return [
        {"role": "system", "content": SYSTEM_MESSAGE},
        {"role": "user", "content": f"{prompt_text}\n\n{ANSWER_INSTRUCTION}"},
    ]


def question_prompt(
    *, patient: pm.Patient, question: str, at: date, use_retrieval: bool = True, user=None, timings: dict | None = None
):
    """The initial personalised prompt for a question, grounded in retrieved guidance when asked.

    Returns (prompt, passages, history, pregnancy); guidance requests and refinement runs share it."""
    timings = timings if timings is not None else {}
    started = time.perf_counter()
    history = patient_history(patient, at)  # read once: retrieval and safety share it
    pregnancy = current_pregnancy(history)
    passages = []
    if use_retrieval:
        passages = guidance_passages(question, history, pregnancy)
        timings["retrieval_ms"] = round((time.perf_counter() - started) * 1000, 1)
    step = time.perf_counter()
    prompt = prompt_build(
        patient=patient, question=question, at=at, user=user, knowledge=passage_texts(chunk for chunk, _ in passages)
    )
    timings["prompt_ms"] = round((time.perf_counter() - step) * 1000, 1)
    return prompt, passages, history, pregnancy


def passage_citations(passages) -> list[dict]:
    """The guidance sources her prompt carries, numbered as the prompt numbers them."""
    return [
        {
            "n": n,
            "chunk": chunk.pk,
            "document": chunk.document_id,
            "title": chunk.document.title,
            "source": chunk.document.source,
            "excerpt": chunk.text[:400],
            "score": round(score, 3),
            "cited_in_text": False,
        }
        for n, (chunk, score) in enumerate(passages, 1)
    ]


def guidance_passages(question: str, history, pregnancy) -> list:
    """The guidance passages retrieved for a question about her: (chunk, score), best first.

    The query carries her risk flags, so a question about a hypertensive woman finds the
    hypertension guidance."""
    flags = " ".join(f.label for f in risk_flags(history, pregnancy))
    return knowledge_search(f"{question} {flags}", k=RETRIEVED_PASSAGES)


def consultation_warm_up() -> None:
    """Load what a process's first question would otherwise wait for: the embedding model that retrieves her
    guidance sources (seconds, on the request path) and the tokenizer that counts her prompt's tokens. A web server
    calls it as it starts (`pmlm_site.wsgi`), so the first clinician to ask after a restart does not pay for it."""
    default_embedder().embed(["antenatal care"])
    count_tokens("antenatal care")


def passage_texts(chunks) -> list[str]:
    """The retrieved passages as her prompt carries them, best first (`passages_as_read`)."""
    return passages_as_read([(chunk.text, chunk.document.title) for chunk in chunks])
