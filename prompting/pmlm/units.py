"""Unit conversions and the reading of qualitative results. Plain functions, no state."""

from __future__ import annotations

import re

from . import codes

GLUCOSE_MMOL_TO_MG = 18.016
HAEMOGLOBIN_MMOL_TO_G_DL = 1.611  # 1 mmol/L (monomer) = 1.611 g/dL


def _unit(unit: str) -> str:
    return (unit or "").strip().replace(" ", "").lower()


def to_kg(value: float, unit: str) -> float | None:
    u = _unit(unit)
    if u in ("kg", "kilogram", "kilograms", ""):
        return value
    if u in ("g", "gram", "grams"):
        return value / 1000
    if u in ("[lb_av]", "lb", "lbs", "pound", "pounds"):
        return value * 0.45359237
    return None


def to_cm(value: float, unit: str) -> float | None:
    u = _unit(unit)
    if u in ("cm", "centimeter", "centimetre", ""):
        return value
    if u in ("m", "meter", "metre"):
        return value * 100
    if u in ("mm",):
        return value / 10
    if u in ("[in_i]", "in", "inch", "inches", "[in_us]"):
        return value * 2.54
    return None


def to_g_dl(value: float, unit: str) -> float | None:
    """Haemoglobin in g/dL (accepts g/L and mmol/L)."""
    u = _unit(unit)
    if u in ("g/dl", "gm/dl", ""):
        return value
    if u == "g/l":
        return value / 10
    if u == "mmol/l":
        return value * HAEMOGLOBIN_MMOL_TO_G_DL
    return None


def to_mg_dl(value: float, unit: str) -> float | None:
    """Glucose in mg/dL (accepts mmol/L)."""
    u = _unit(unit)
    if u in ("mg/dl", ""):
        return value
    if u == "mmol/l":
        return value * GLUCOSE_MMOL_TO_MG
    return None


def to_mm_hg(value: float, unit: str) -> float | None:
    return value if _unit(unit) in ("mm[hg]", "mmhg", "") else None


def to_weeks(value: float, unit: str) -> float | None:
    u = _unit(unit)
    if u in ("wk", "wks", "week", "weeks", "w", ""):
        return value
    if u in ("d", "day", "days"):
        return value / 7
    return None


# --- qualitative results ----------------------------------------------------------------------------

_POSITIVE_WORDS = {"positive", "pos", "detected", "reactive", "present", "yes", "true", "abnormal", "growth"}
_NEGATIVE_WORDS = {
    "negative",
    "neg",
    "not detected",
    "non-reactive",
    "nonreactive",
    "non reactive",
    "absent",
    "no",
    "false",
    "no growth",
    "normal",
    "none",
}


def qualitative(
    value_code: str = "", value_string: str = "", value_boolean: bool | None = None, value_display: str = ""
) -> bool | None:
    """True for positive/reactive/detected, False for negative, None when it says neither."""
    if value_boolean is not None:
        return value_boolean
    if value_code in codes.POSITIVE_RESULTS:
        return True
    if value_code in codes.NEGATIVE_RESULTS:
        return False
    for text in (value_string, value_display if not value_code else ""):
        words = " ".join(text.strip().lower().replace("_", " ").split())
        if words in _NEGATIVE_WORDS or words.startswith(
            ("negative", "not detected", "non-reactive", "nonreactive", "no growth")
        ):
            return False
        if words in _POSITIVE_WORDS or words.startswith(("positive", "detected", "reactive")):
            return True
    return None


_ORDINAL = {"negative": 0, "neg": 0, "nil": 0, "trace": 0.5, "+-": 0.5, "±": 0.5}
_PLUS = re.compile(r"^(\d)\s*\+$")


def dipstick_grade(
    value_string: str = "", value_display: str = "", quantity: float | None = None, unit: str = "", value_code: str = ""
) -> float | None:
    """Urine dipstick as a grade: negative 0, trace 0.5, 1+ … 4+ (also "+", "++", or mg/dL)."""
    if quantity is not None:
        if _unit(unit) in ("mg/dl", ""):
            # Protein dipstick thresholds: 30 mg/dL ≈ 1+, 100 ≈ 2+, 300 ≈ 3+, ≥ 1000 (2000) ≈ 4+.
            return (
                4
                if quantity >= 1000
                else 3
                if quantity >= 300
                else 2
                if quantity >= 100
                else 1
                if quantity >= 30
                else 0.5
                if quantity >= 15
                else 0
            )
        return None
    if value_code in codes.NEGATIVE_RESULTS:
        return 0
    for text in (value_string, value_display):
        t = text.strip().lower().replace(" ", "")
        if not t:
            continue
        if t in _ORDINAL:
            return _ORDINAL[t]
        m = _PLUS.match(t)
        if m:
            return float(m.group(1))
        if set(t) == {"+"}:
            return float(len(t))
        if t.startswith("negative"):
            return 0
        if t.startswith("trace"):
            return 0.5
    return None
