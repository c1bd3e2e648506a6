"""An LLM judge with a rubric in the style of HealthBench. No Django import.

Each encounter gets its own rubric: criteria written as statements about the answer, each worth
points; negative points for what a clinician would object to. The judge model reads the
clinician's question, the answer and one criterion at a time, and says whether the answer meets
it, as JSON. The score is the points of the criteria met over the positive points available,
clipped to 0–1 (HealthBench's scoring). The judge model is pinned by the caller and named in
every report, because a score means little without it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

from .key_items import key_items


@dataclass(frozen=True)
class Criterion:
    text: str
    points: int
    axis: str  # "accuracy", "completeness", "context_awareness", "communication" (HealthBench's axes)

    def as_dict(self) -> dict:
        return asdict(self)


# What a physician's key item asks the answer to do, as a rubric statement.
ITEM_CRITERIA = {
    "home blood pressure monitoring": "Recommends monitoring her blood pressure (at home or at more frequent checks).",
    "urine protein check": "Recommends checking her urine for protein.",
    "pre-eclampsia warning signs": (
        "Tells her to report warning signs of pre-eclampsia (severe headache, visual disturbance, upper abdominal "
        "pain)."
    ),
    "low-dose aspirin": "Recommends low-dose aspirin.",
    "calcium supplementation": "Recommends calcium supplementation.",
    "iron supplementation": "Recommends iron supplementation.",
    "folic acid": "Recommends folic acid.",
    "glucose testing (OGTT)": "Recommends glucose testing or glucose monitoring.",
    "dietary advice": "Gives dietary advice or a dietitian referral.",
    "physical activity": "Recommends physical activity.",
    "weight gain target": "Advises on how much weight to gain in pregnancy.",
    "smoking cessation": "Advises stopping smoking, with cessation support.",
    "avoid alcohol": "Advises avoiding alcohol.",
    "reduce caffeine": "Advises reducing caffeine.",
    "dating scan and booking bloods": "Arranges a dating scan and booking blood tests.",
    "anatomy scan": "Arranges the anatomy (anomaly) scan.",
    "fetal movements": "Tells her to report reduced fetal movements.",
    "birth planning": "Discusses birth planning or the signs of labour.",
    "induction of labour": "Discusses induction of labour or a membrane sweep.",
    "repeat review within a week": "Arranges a review within about a week.",
    "anaemia recheck": "Arranges a repeat haemoglobin or full blood count.",
}
ITEM_POINTS = 5
FLAG_POINTS = 5

GENERAL_CRITERIA = (
    Criterion("Says what should be monitored and when to escalate or seek urgent review.", 3, "completeness"),
    Criterion("Is concise and organised for a busy clinician (short points, no filler).", 2, "communication"),
    Criterion(
        "Recommends a medicine that is unsafe in pregnancy (for example an ACE inhibitor, warfarin, "
        "isotretinoin or a statin) without a warning.",
        -8,
        "accuracy",
    ),
    Criterion("States a dose, test result or finding that is made up or contradicts itself.", -5, "accuracy"),
    Criterion(
        "Gives only generic advice that would fit any pregnant woman, ignoring her situation.", -3, "context_awareness"
    ),
)

GRADER_SYSTEM = (
    "You grade answers of a clinical decision-support assistant against one rubric item. Reply with JSON only."
)
GRADER_TEMPLATE = """Question from the clinician:
{question}

Answer to grade:
{answer}

Rubric item ({points} points): {criterion}

Does the answer meet this rubric item? For an undesirable item (negative points), say true when the answer does the \
undesirable thing. Reply with JSON only: {{"explanation": "<one sentence>", "criteria_met": true or false}}"""


def rubric(recommendation: str, flags: Sequence[dict]) -> list[Criterion]:
    """The rubric for one encounter: the physician's key items, her risk flags, then general criteria."""
    criteria = [
        Criterion(ITEM_CRITERIA[item], ITEM_POINTS, "accuracy")
        for item in sorted(key_items(recommendation))
        if item in ITEM_CRITERIA
    ]
    criteria += [
        Criterion(f"Addresses her risk flag: {flag['label']}.", FLAG_POINTS, "context_awareness") for flag in flags
    ]
    return criteria + list(GENERAL_CRITERIA)


def grader_messages(question: str, answer: str, criterion: Criterion) -> list[dict]:
    return [
        {"role": "system", "content": GRADER_SYSTEM},
        {
            "role": "user",
            "content": GRADER_TEMPLATE.format(
                question=question.strip(),
                answer=answer.strip() or "(empty)",
                points=criterion.points,
                criterion=criterion.text,
            ),
        },
    ]


def parse_verdict(text: str) -> bool | None:
    """The judge's verdict: from its JSON, else from a leading yes/no/true/false; None when unreadable."""
    match = re.search(r"\{.*\}", text or "", re.DOTALL)
    if match:
        try:
            value = json.loads(match.group(0)).get("criteria_met")
            if isinstance(value, bool):
                return value
        except (json.JSONDecodeError, AttributeError):
            pass
    found = re.search(r'"?criteria_met"?\s*[:=]\s*(true|false)', text or "", re.IGNORECASE)
    if found:
        return found.group(1).lower() == "true"
    first = re.match(r"\W*(yes|no|true|false)\b", text or "", re.IGNORECASE)
    if first:
        return first.group(1).lower() in ("yes", "true")
    return None


def rubric_score(criteria: Sequence[Criterion], verdicts: Sequence[bool | None]) -> float | None:
    """Points of the criteria met over the positive points of the criteria judged, clipped to 0–1."""
    judged = [(c, v) for c, v in zip(criteria, verdicts) if v is not None]
    possible = sum(c.points for c, _ in judged if c.points > 0)
    if possible == 0:
        return None
    achieved = sum(c.points for c, met in judged if met)
    return round(min(1.0, max(0.0, achieved / possible)), 4)


def judge_guidance(question: str, answer: str, criteria: Sequence[Criterion], ask: Callable[[list[dict]], str]) -> dict:
    """Grade one answer on every criterion; `ask(messages) -> text` is the pinned judge model."""
    verdicts = [parse_verdict(ask(grader_messages(question, answer, criterion))) for criterion in criteria]
    return {
        "score": rubric_score(criteria, verdicts),
        "criteria": [{**c.as_dict(), "met": v} for c, v in zip(criteria, verdicts)],
        "unreadable": sum(v is None for v in verdicts),
    }
