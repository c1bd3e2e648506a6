"""Clinical findings and numbers of her context: one vocabulary for the refinement guard
(`refine.py`) and the grounding check of guidance (`grounding.py`). No Django import.

A refined prompt may only mention a finding, or state a number, that her context does; a
guidance may only attribute one to her when her context does.
"""

from __future__ import annotations

import re

# Findings text may only attribute to her when her context mentions them: a policy or an answer
# that calls a woman with normal blood pressure pre-eclamptic steers care with a false fact.
FINDINGS = {
    "pre-eclampsia": r"pre-?eclamp",
    "eclampsia": r"(?<!pre-)(?<!pre)eclampsia",
    "hypertension": r"hypertens",
    "diabetes": r"diabet",
    "anaemia": r"an(?:a)?emi",
    "obesity": r"obes",
    "underweight": r"underweight",
    "smoking": r"smok|tobacco|cigarette",
    "alcohol": r"alcohol",
    "caffeine": r"caffeine",
    "HIV": r"\bhiv\b",
    "syphilis": r"syphilis",
    "hepatitis": r"hepatitis",
    "tuberculosis": r"tubercul|\btb\b",
    "infection": r"infection",
    "group B streptococcus": r"streptococ|\bgbs\b",
    "RhD negative": r"rh\s?d?[- ]negative|rhesus",
    "twins": r"twin|multiple pregnancy",
    "caesarean": r"caesarean|cesarean|c-section",
    "post-term": r"post-?term|overdue",
    "preterm": r"pre-?term",
    "bleeding": r"bleed|haemorrhage|hemorrhage",
    "placenta": r"placent",
    "miscarriage": r"miscarr|pregnancy loss",
}
FINDING_PATTERNS = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in FINDINGS.items()}

_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def numbers(text: str) -> set[str]:
    """Every number in a text, decimal commas read as points: what 'found in her context' compares."""
    return {n.replace(",", ".") for n in _NUMBER.findall(text)}


def findings_in(text: str) -> set[str]:
    """The findings a text mentions, affirmed or not."""
    return {name for name, pattern in FINDING_PATTERNS.items() if pattern.search(text)}


# A context item that holds one of these does not affirm the finding it names: "tobacco smoking
# status: never smoker", "HIV: negative", "no diabetes".
_NEGATED = re.compile(r"\b(?:never|no|not|non|none|negative|denies|denied|without|nil)\b|\bnon-", re.IGNORECASE)
_ITEMS = re.compile(r"[^;\n.]+(?:\.\d[^;\n.]*)*")
_RISK_OF = re.compile(r"\brisks? of\s*$", re.IGNORECASE)
_NO_NEGATION_CHECK = {"RhD negative"}  # its own name says negative


def affirmed_findings(context: str) -> set[str]:
    """The findings her context affirms: named in an item (a line, or a part of one between
    semicolons) that does not negate it, and not only as a risk ("high risk of pre-eclampsia")."""
    found = set()
    for item in _ITEMS.findall(context):
        negated = _NEGATED.search(item)
        for name, pattern in FINDING_PATTERNS.items():
            if name in found or (negated and name not in _NO_NEGATION_CHECK):
                continue
            if any(not _RISK_OF.search(item[: m.start()]) for m in pattern.finditer(item)):
                found.add(name)
    return found
