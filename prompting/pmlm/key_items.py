"""Key clinical items in free-text advice: what a physician recommended, in comparable terms.

Used to aggregate what similar patients' physicians recommended (never quoting them) and, later,
to score how much of a physician's advice generated guidance covers.
"""

from __future__ import annotations

import re

KEY_ITEMS: dict[str, str] = {
    "home blood pressure monitoring": (
        r"home (bp|blood pressure) monitoring|monitor (her |your )?blood pressure at home"
    ),
    "urine protein check": r"urine protein|proteinuria|dipstick",
    "pre-eclampsia warning signs": r"headache|visual disturbance|blurred vision|epigastric|upper abdominal pain",
    "low-dose aspirin": r"aspirin",
    "calcium supplementation": r"calcium",
    "iron supplementation": r"\biron\b",
    "folic acid": r"folic",
    "glucose testing (OGTT)": r"ogtt|glucose tolerance|glucose (self-)?monitoring|home glucose",
    "dietary advice": r"dietitian|low-glycaemic|low-glycemic|healthy eating|\bdiet\b",
    "physical activity": r"physical activity|moderate activity|exercise|minutes of moderate",
    "weight gain target": r"weight gain|total gain|recommended gain|target gain|aim for \d",
    "smoking cessation": r"smok|nicotine|quit",
    "avoid alcohol": r"alcohol",
    "reduce caffeine": r"caffeine",
    "dating scan and booking bloods": r"dating (scan|ultrasound)|booking blood",
    "anatomy scan": r"anatomy scan|anomaly scan",
    "fetal movements": r"fetal movements|reduced movements",
    "birth planning": r"birth plan|signs of labour|mode of birth|options for birth|vbac|vaginal birth after",
    "induction of labour": r"induction|membrane sweep",
    "repeat review within a week": r"within a week|in one week|in a week",
    "anaemia recheck": r"recheck haemoglobin|repeat full blood count|recheck hb",
    # After a pregnancy ends (termination, loss, birth)
    "bleeding and infection check": r"heavy bleeding|signs of infection|\bfever\b|foul-smelling",
    "contraception": r"contracept|family planning",
    "anti-D immunoglobulin": r"anti-d\b|rhd negative|rh-negative|rhesus",
    "emotional support": r"low mood|depression|emotional support",
}
_COMPILED = {name: re.compile(pattern, re.IGNORECASE) for name, pattern in KEY_ITEMS.items()}


def key_items(text: str) -> set[str]:
    return {name for name, pattern in _COMPILED.items() if pattern.search(text or "")}
