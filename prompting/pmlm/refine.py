"""Prompt refinement: what the refiner policy is asked, how its answer becomes the refined prompt,
and the guard every refined prompt passes before it is used. No Django import.

The policy reads the whole initial prompt and rewrites its instructions for this patient: which
risk flags to address first, what to monitor, when to escalate. The refined prompt carries her
record, her peers and the guidance sources verbatim, then the rewritten instructions, then the
question. A 135M-parameter model copying a 1,000-token record word for word would lose facts
and take a minute per consultation on a CPU; rewriting the part that steers the answer keeps
every fact by construction and costs a few seconds. The guard still checks the whole text: a
refined prompt that drops a risk flag or a line of her record, names her, states a number found
nowhere in the context, mentions a finding (pre-eclampsia, diabetes, smoking…) her context does
not, runs over the token budget or is malformed is never used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from .composer import render
from .deidentify import leaks, scrub
from .findings import FINDING_PATTERNS, FINDINGS  # noqa: F401  (FINDINGS: the vocabulary the guard checks)
from .findings import numbers as _numbers

REFINED_TITLE = "Instructions for this patient"
MAX_INSTRUCTION_CHARS = 1200
MIN_INSTRUCTION_CHARS = 20

REFINER_SYSTEM = "You write the instructions for a clinical decision-support assistant in obstetrics and gynaecology."
REFINER_TASK = (
    "Below is the context a clinician's assistant will receive for one patient, and the clinician's question. "
    "Rewrite its instructions for this patient: name each risk flag and what the answer must address first, what to "
    "monitor, what to advise and when to escalate, in at most five short bullet points. Use only facts from the "
    "context; add no number, dose or name that is not in it."
)


PROBLEM_LABELS = {
    "dropped_flag": "dropped a risk flag", "dropped_fact": "dropped a fact of her record", "identifier": "carried an identifier",
    "over_budget": "over the token budget", "malformed": "malformed", "invented_number": "stated a number not in her context",
    "invented_finding": "mentioned a finding not in her context", "policy_error": "the policy failed",
}


@dataclass(frozen=True)
class Problem:
    """One reason a refined prompt may not be used; `kind` names its penalty in RewardWeights."""

    kind: str  # dropped_flag | dropped_fact | identifier | over_budget | malformed | invented_number | invented_finding
    detail: str

    def as_dict(self) -> dict:
        return {**asdict(self), "label": PROBLEM_LABELS[self.kind]}


def policy_messages(initial_prompt: str) -> list[dict]:
    """The conversation the refiner policy completes."""
    return [{"role": "system", "content": REFINER_SYSTEM},
            {"role": "user", "content": f"{REFINER_TASK}\n\n{initial_prompt}"}]


def clean_instructions(text: str, *, truncated: bool = False) -> str:
    """The policy's answer as instructions: headings and code fences removed; when the token limit
    cut the answer off, its unfinished sentence is dropped (back to the last complete one)."""
    lines = []
    for line in (text or "").strip().splitlines():
        line = line.rstrip()
        if line.strip().startswith("```"):
            continue
        lines.append(re.sub(r"^#+\s*", "", line))
    cleaned = "\n".join(lines).strip()
    if truncated and cleaned and cleaned[-1] not in ".!?)":
        last_end = max(cleaned.rfind(mark) for mark in (". ", ".\n", "! ", "? ", "\n"))
        if last_end > 0:
            cleaned = cleaned[:last_end + 1].strip()
    return cleaned


def malformed(instructions: str) -> str:
    """Why the policy's answer cannot serve as instructions, or '' when it can."""
    if len(instructions) < MIN_INSTRUCTION_CHARS:
        return "empty or too short"
    if len(instructions) > MAX_INSTRUCTION_CHARS:
        return f"longer than {MAX_INSTRUCTION_CHARS} characters"
    letters = sum(ch.isalpha() for ch in instructions)
    if letters < 0.5 * len(instructions.replace(" ", "")):
        return "mostly not words"
    words = re.findall(r"[a-z]+", instructions.lower())
    if len(words) >= 20 and len(set(words)) < 0.3 * len(words):
        return "repeats itself"
    lines = [line.strip() for line in instructions.splitlines() if line.strip()]
    if len(lines) >= 3 and max(lines.count(line) for line in lines) >= 3:
        return "repeats the same line"
    sentences = [" ".join(re.findall(r"[a-z0-9]+", s.lower())) for s in re.split(r"[.!?\n]+", instructions)]
    sentences = [s for s in sentences if len(s.split()) >= 4]
    if len(sentences) != len(set(sentences)):
        return "repeats a sentence"
    return ""


def refined_sections(initial_sections: Sequence[dict], instructions: str) -> list[dict]:
    """Her record, peers and sources verbatim; then the rewritten instructions; then the question."""
    context = [dict(s) for s in initial_sections if s["source"] not in ("instructions", "question")]
    question = [dict(s) for s in initial_sections if s["source"] == "question"]
    return context + [{"source": "instructions", "title": REFINED_TITLE, "text": instructions, "refined": True}] + question


def refined_text(initial_sections: Sequence[dict], instructions: str) -> str:
    return render(refined_sections(initial_sections, instructions))


def record_facts(initial_sections: Sequence[dict]) -> list[str]:
    """The facts of her record a refined prompt must keep: every line of the self section."""
    return [line.strip() for s in initial_sections if s["source"] == "self" for line in s["text"].splitlines() if line.strip()]


def check_refined(*, initial_text: str, initial_sections: Sequence[dict], risk_flag_labels: Sequence[str], refined: str,
                  instructions: str, identifiers: Sequence[str], count_tokens: Callable[[str], int],
                  token_budget: int) -> list[Problem]:
    """Every reason the refined prompt may not replace the initial one (empty: it may)."""
    problems = []
    reason = malformed(instructions)
    if reason:
        problems.append(Problem("malformed", reason))
    lowered = refined.lower()
    for label in risk_flag_labels:
        if label.lower() not in lowered:
            problems.append(Problem("dropped_flag", label))
    for fact in record_facts(initial_sections):
        if fact not in refined:
            problems.append(Problem("dropped_fact", fact[:120]))
    named = leaks(instructions, list(identifiers))
    _, patterned = scrub(instructions)
    if named or patterned:
        problems.append(Problem("identifier", "names the patient" if named else "holds a date, contact or record number"))
    known = _numbers(initial_text) | _numbers(REFINER_TASK)
    for number in sorted(_numbers(instructions) - known):
        problems.append(Problem("invented_number", number))
    for finding, pattern in FINDING_PATTERNS.items():
        if pattern.search(instructions) and not pattern.search(initial_text):
            problems.append(Problem("invented_finding", finding))
    tokens = count_tokens(refined)
    if tokens > token_budget:
        problems.append(Problem("over_budget", f"{tokens} tokens, budget {token_budget}"))
    return problems

