"""The patient-view service's cards (CDS Hooks 2.0, "Card Attributes"). No Django import.

One card per WHO risk flag in her record, with its evidence; one card with what her peers' physicians most often
recommended in situations like hers; one card that opens her consultation workspace in the clinic. The LLM is
never called here: guidance takes seconds, and the EHR waits for these cards.
"""

from __future__ import annotations

import uuid

from prompting.pmlm.composer import PeerSummary
from prompting.pmlm.selfinformed import SelfInformed

SUMMARY_LIMIT = 139  # "<140-character summary"
SOURCE_LABEL = "PMLM clinic"
FLAG_SOURCE_LABEL = "PMLM clinic · WHO antenatal care recommendations (2016)"
TOPIC_SYSTEM = "https://pmlm.clinic/fhir/CodeSystem/risk-flags"
# How urgent each flag is for the clinician opening her chart. Critical: a value that calls for action today
# (severe hypertension, severe anaemia). Warning: a condition that changes her care plan. Info: the rest.
CRITICAL = {"severe_hypertension", "severe_anaemia"}
WARNING = {
    "hypertension",
    "anaemia",
    "pre_eclampsia",
    "pre_eclampsia_risk",
    "gestational_diabetes",
    "diabetes_in_pregnancy",
    "urinary_infection",
    "gbs_positive",
    "rh_negative",
    "post_term",
    "multiple_pregnancy",
    "substance_use",
    "hiv_positive",
    "syphilis_positive",
    "hepatitis_b_positive",
    "hepatitis_c_positive",
    "tb_screening_positive",
}
INDICATOR_ORDER = {"critical": 0, "warning": 1, "info": 2}


def indicator(flag_code: str) -> str:
    return "critical" if flag_code in CRITICAL else "warning" if flag_code in WARNING else "info"


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[: SUMMARY_LIMIT - 1].rstrip() + "…"


def state_words(summary: SelfInformed) -> str:
    pregnancy = summary.pregnancy
    return pregnancy.label if not pregnancy.pregnant else f"pregnant, {pregnancy.label}"


def patient_view_cards(summary: SelfInformed, peer: PeerSummary | None, *, workspace: dict) -> list[dict]:
    """Her cards, most urgent first. `workspace`: the link that opens her workspace ({label, url, type, …})."""
    state = state_words(summary)
    cards = [
        {
            "uuid": str(uuid.uuid4()),
            "summary": _summary(flag.label),
            "indicator": indicator(flag.code),
            "detail": f"**Evidence:** {flag.evidence}\n\nHer state: {state}. Raised by the clinic's WHO antenatal "
            "care rules from the record the EHR shared.",
            "source": {
                "label": FLAG_SOURCE_LABEL,
                "topic": {"system": TOPIC_SYSTEM, "code": flag.code, "display": flag.label},
            },
        }
        for flag in summary.flags
    ]
    cards.sort(key=lambda card: INDICATOR_ORDER[card["indicator"]])
    if not summary.flags:
        cards.append(
            {
                "uuid": str(uuid.uuid4()),
                "summary": _summary(f"No WHO antenatal risk flag in the record shared ({state})"),
                "indicator": "info",
                "detail": "The clinic's WHO antenatal care rules found no risk flag in the record the EHR shared. "
                "A flag that needs a value the record lacks (a blood pressure, a haemoglobin, her gestational age) "
                "cannot be raised: check what is missing.",
                "source": {"label": FLAG_SOURCE_LABEL},
            }
        )
    if peer is not None and peer.recommended:
        items = [item for item, _ in peer.recommended]
        situation = f" ({peer.situation})" if peer.situation else ""
        cards.append(
            {
                "uuid": str(uuid.uuid4()),
                "summary": _summary("Similar patients' physicians most often recommended: " + ", ".join(items)),
                "indicator": "info",
                "detail": f"From the physicians of {len(peer.similarities)} similar patients of this clinic, in "
                f"situations like hers{situation}:\n\n"
                + "\n".join(f"- {item}: {share:.0%} of them" for item, share in peer.recommended)
                + "\n\nWhat similar patients were advised, not a recommendation for her.",
                "source": {"label": f"{SOURCE_LABEL} · similar patients (model v{peer.model_version})"},
            }
        )
    cards.append(
        {
            "uuid": str(uuid.uuid4()),
            "summary": "Personalised guidance for her is one click away",
            "indicator": "info",
            "detail": "Open her workspace in the clinic to ask a question: the guidance is built from her record, "
            "similar patients and WHO guidance, with its prompt and sources side by side.",
            "source": {"label": SOURCE_LABEL},
            "links": [workspace],
        }
    )
    return cards
