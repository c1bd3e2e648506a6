"""Terminology systems and how a coding is chosen when FHIR gives several. No Django import.

The clinical codes themselves (pregnancy, visits, observations) are the method's, in prompting/pmlm/codes.py,
so that the record, its filters and the prompt agree on who is pregnant."""

from __future__ import annotations

from typing import NamedTuple

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CVX = "http://hl7.org/fhir/sid/cvx"
PMLM = "urn:pmlm:observation"

# Systems preferred when a CodeableConcept carries several codings.
_PREFERRED_SYSTEMS = (LOINC, SNOMED, RXNORM, CVX, PMLM)

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)


class Coding(NamedTuple):
    system: str
    code: str
    display: str


def clean_display(text: str) -> str:
    """Synthea's displays contain zero-width spaces; they never reach the record."""
    return " ".join(text.translate(_ZERO_WIDTH).split())


def preferred_coding(codings: list[Coding]) -> Coding:
    for system in _PREFERRED_SYSTEMS:
        for coding in codings:
            if coding.system == system:
                return coding
    return codings[0]
