"""What the refinement policy reads: a compact summary of her situation and the question. No Django import.

The policy does not read the whole prompt (over a thousand tokens); it reads a few lines taken
from it: her pregnancy state, her risk flags, her latest results, whether her peers' physicians'
advice is in the prompt, whether guidance sources are, and the question. A couple of hundred
tokens at most: a small policy learns from them in a CPU budget, and curators can read what it
read. The same lines give the "kinds of patient" the run page groups the policy's choices by.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

MAX_CHARS = 700  # about 200 tokens
STATE_LINE = re.compile(r"^- Age [^;]*;\s*")
LATEST = "- Latest results: "


def _self_lines(sections: Sequence[dict]) -> list[str]:
    return [line for s in sections if s["source"] == "self" for line in s["text"].splitlines()]


def pregnancy_words(sections: Sequence[dict]) -> str:
    """Her pregnancy state as the prompt states it ("pregnant, 30+2 weeks, trimester 3", "not pregnant")."""
    lines = _self_lines(sections)
    if not lines:
        return "state unknown"
    for part in lines[0].lstrip("- ").rstrip(".").split("; "):
        if part.startswith("pregnant, gestational age not recorded"):
            return "pregnant, gestational age not recorded"
        if part.startswith("pregnant") or part.startswith("not pregnant"):
            return part.split(" (from")[0]
    return "state unknown"


def kind_of_patient(sections: Sequence[dict], risk_flag_labels: Sequence[str]) -> list[str]:
    """The kinds a curator reads the policy's choices by: her stage of pregnancy and each risk flag."""
    state = pregnancy_words(sections)
    trimester = re.search(r"trimester (\d)", state)
    kinds = [
        f"trimester {trimester.group(1)}"
        if trimester
        else "not pregnant"
        if state == "not pregnant"
        else "pregnancy ended recently"
        if state.startswith("not pregnant")
        else "pregnant, undated"
        if state.startswith("pregnant")
        else state
    ]
    kinds += list(risk_flag_labels) or ["no risk flag"]
    return kinds


def sources_given(sections: Sequence[dict]) -> bool:
    """Whether the prompt gives guidance sources: the setting a run chooses and guards its deployed edit for."""
    return any(s["source"] == "knowledge" for s in sections)


def sources_setting(sections: Sequence[dict]) -> str:
    return "on" if sources_given(sections) else "off"


def situation_summary(sections: Sequence[dict], risk_flag_labels: Sequence[str], question: str) -> str:
    """The policy's input: at most about 200 tokens, no identifier: every line, the question
    included, is taken from the de-identified prompt (`question` only when it has no question section)."""
    question = next((s["text"] for s in sections if s["source"] == "question"), question)
    latest = next((line[len(LATEST) :] for line in _self_lines(sections) if line.startswith(LATEST)), "none recorded")
    latest = re.sub(r"\s*\([^)]*\)", "", latest)  # "(3 days ago)": when does not change which edit suits her
    peer_advice = any(
        line.startswith("- Their physicians most often recommended")
        for s in sections
        if s["source"] == "peer"
        for line in s["text"].splitlines()
    )
    sources = sources_given(sections)
    lines = [
        f"State: {pregnancy_words(sections)}.",
        "Risk flags: " + ("; ".join(risk_flag_labels) if risk_flag_labels else "none") + ".",
        f"Latest: {latest.rstrip('.')}.",
        f"Peers' advice: {'given' if peer_advice else 'none'}. Guidance sources: {'given' if sources else 'none'}.",
        f"Question: {question.strip()}",
    ]
    text = "\n".join(lines)
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"
