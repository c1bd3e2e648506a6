"""The last guard before text leaves the system: no name, identifier, contact, address or date.

The history the composer reads is de-identified by construction; free text (displays, notes)
could still carry an identifier, so every prompt passes through `scrub` with the patient's own
identifying strings and general patterns for dates, contacts and identifiers.
"""

from __future__ import annotations

import re

REDACTED = "[redacted]"

_PATTERNS = [
    re.compile(r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?)?\b"),  # ISO dates
    re.compile(r"\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}\b"),  # 14/03/1992, 3.14.92
    re.compile(r"\b\d{1,2}(?:st|nd|rd|th)? (?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{4}\b", re.I),
    re.compile(r"\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]* \d{1,2}(?:st|nd|rd|th)?,? \d{4}\b", re.I),
    re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),  # e-mail
    re.compile(r"\bhttps?://\S+"),
    re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),  # UUIDs (FHIR ids, MRNs)
    re.compile(r"\b\d{3}-\d{2}-\d{4}\b"),  # social security numbers
    re.compile(r"\b[A-Z]{2,4}[-_]?\d{4,}\b"),  # record numbers such as MRN-4471, MRN00012
]
# Phone numbers and other long identifiers: digit runs with separators, at least 7 digits.
_LONG_NUMBER = re.compile(r"(?<![\w/.])\+?\(?\d[\d\s().-]{5,}\d(?![\w/])")


def scrub(text: str, identifiers: list[str] = ()) -> tuple[str, int]:
    """Remove the patient's identifiers and anything shaped like a date or contact.

    Returns the clean text and how many replacements were made.
    """
    count = 0
    for identifier in sorted({i for i in identifiers if i and len(i) >= 2}, key=len, reverse=True):
        pattern = re.compile(r"(?<!\w)" + re.escape(identifier) + r"(?!\w)")
        text, n = pattern.subn(REDACTED, text)
        count += n
    for pattern in _PATTERNS:
        text, n = pattern.subn(REDACTED, text)
        count += n
    long_numbers = 0

    def redact_long_number(match: re.Match) -> str:
        nonlocal long_numbers
        found = match.group(0)
        if sum(ch.isdigit() for ch in found) >= 7 and not found.isdigit():
            long_numbers += 1
            return REDACTED
        return found

    text = _LONG_NUMBER.sub(redact_long_number, text)
    return text, count + long_numbers


def leaks(text: str, identifiers: list[str]) -> list[str]:
    """The identifiers still present in the text (should always be empty after scrub)."""
    return [i for i in identifiers if i and len(i) >= 2 and re.search(r"(?<!\w)" + re.escape(i) + r"(?!\w)", text)]
