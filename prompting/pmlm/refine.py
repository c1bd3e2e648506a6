"""The guard every refined prompt passes before it is used. No Django import.

Refined prompts are edits from a curated menu (`edits.py`), so by construction they keep her
facts and add only library sentences. The guard still checks the finished text, whatever made
it: a refined prompt that drops a risk flag or a line the composer never cuts (her pregnancy
state, her risk flags), names her or holds a date or contact, states a number or mentions a
finding (pre-eclampsia, diabetes, smoking…) found nowhere in her initial prompt or the library,
or runs over the token budget (the template's, plus what an edit may add) is never used; the
initial prompt is sent instead.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from .deidentify import leaks, scrub
from .edits import EDIT_TOKEN_ALLOWANCE, library_lines
from .findings import FINDING_PATTERNS
from .findings import numbers as _numbers

PROBLEM_LABELS = {
    "dropped_flag": "dropped a risk flag",
    "dropped_fact": "dropped a fact the prompt always carries",
    "identifier": "carried an identifier",
    "over_budget": "over the token budget",
    "malformed": "not an edit of the menu",
    "invented_number": "stated a number not in her context",
    "invented_finding": "mentioned a finding not in her context",
    "policy_error": "the policy failed",
}


@dataclass(frozen=True)
class Problem:
    """One reason a refined prompt may not be used; `kind` names its penalty in RewardWeights."""

    kind: str  # a key of PROBLEM_LABELS
    detail: str

    def as_dict(self) -> dict:
        return {**asdict(self), "label": PROBLEM_LABELS[self.kind]}


def record_facts(initial_sections: Sequence[dict]) -> list[str]:
    """The lines of her record every prompt carries: her state and her risk flags (never cut by the composer)."""
    lines = [
        line.strip()
        for s in initial_sections
        if s["source"] == "self"
        for line in s["text"].splitlines()
        if line.strip()
    ]
    return lines[:2]


def check_refined(
    *,
    initial_text: str,
    initial_sections: Sequence[dict],
    risk_flag_labels: Sequence[str],
    refined: str,
    identifiers: Sequence[str],
    count_tokens: Callable[[str], int],
    token_budget: int,
) -> list[Problem]:
    """Every reason the refined prompt may not replace the initial one (empty: it may)."""
    problems = []
    lowered = refined.lower()
    for label in risk_flag_labels:
        if label.lower() not in lowered:
            problems.append(Problem("dropped_flag", label))
    for fact in record_facts(initial_sections):
        if fact not in refined:
            problems.append(Problem("dropped_fact", fact[:120]))
    if leaks(refined, list(identifiers)) or scrub(refined)[1] > scrub(initial_text)[1]:
        problems.append(Problem("identifier", "names the patient or holds a date, contact or record number"))
    # Library lines as rendered for her are curated counselling ("come back sooner: bleeding…") and
    # assert nothing about her; every other line must hold only numbers and findings of her prompt.
    library = set(library_lines(risk_flag_labels))
    rest = "\n".join(line for line in refined.splitlines() if line not in library)
    for number in sorted(_numbers(rest) - _numbers(initial_text)):
        problems.append(Problem("invented_number", number))
    for finding, pattern in FINDING_PATTERNS.items():
        if pattern.search(rest) and not pattern.search(initial_text):
            problems.append(Problem("invented_finding", finding))
    tokens, budget = count_tokens(refined), token_budget + EDIT_TOKEN_ALLOWANCE
    if tokens > budget:
        problems.append(
            Problem("over_budget", f"{tokens} tokens, budget {budget} (the template's and what an edit may add)")
        )
    return problems
