"""Terminology systems and the codes the clinic reads (see FHIR_CODES.md). No Django import."""

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


# Encounter types that are antenatal (prenatal) care visits.
PRENATAL_ENCOUNTER_CODES = frozenset({"424441002", "424619006"})  # prenatal initial visit, prenatal visit
# Conditions that open a pregnancy episode, and those that end one.
PREGNANCY_CONDITION_CODES = frozenset(
    {"72892002", "398254007", "15938005", "198992004", "11687002", "16356006", "65147003", "47200007"}
)
PREGNANCY_END_CONDITION_CODES = frozenset(
    {"19169002", "79586000", "35999006", "156073000"}  # miscarriage, tubal pregnancy, blighted ovum, ...
)
PREGNANCY_END_PROCEDURE_CODES = frozenset(
    {"11466000", "31208007", "177184002", "236973005", "177141003"}  # caesarean, deliveries, induced delivery
)
# Longest a pregnancy episode is taken to last when no end was recorded.
MAX_PREGNANCY_DAYS = 44 * 7
