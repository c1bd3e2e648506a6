"""The evaluation of prompt variants against physicians' recommendations. No Django import.

Five variants of the prompt answer the same question for the same held-out encounter:

- `general`: the question alone (with the guidance sources when retrieval is on);
- `self`: instructions, her own record and the question (self-informed only);
- `peer`: instructions, patients like her and the question (peer-informed only);
- `pmlm`: the whole initial personalised prompt;
- `pmlm_best_edit`: the initial prompt with the single best fixed edit of the refinement run (the
  one edit that scored best on its training patients): the fair baseline for a per-patient policy;
- `pmlm_rl`: the prompt with the edit the RL policy chose for her, as it would be used (the
  initial prompt when the guard rejects the edit).

Each guidance is scored against the physician's recommendation (rewards.score_guidance) and on
her risk flags, safety warnings, unsupported claims about her (grounding.py) and length. `summarise_scores`
averages the scores per (endpoint, retrieval, variant) with bootstrap 95% confidence intervals that
resample patients, so that two encounters of one woman count as one draw, and pairs every variant
with `general` and with `pmlm` on the same encounters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .composer import render
from .rewards import Embed, Reference, closeness, score_guidance

VARIANTS = ("general", "self", "peer", "pmlm", "pmlm_best_edit", "pmlm_rl")
REFINED_VARIANTS = ("pmlm_best_edit", "pmlm_rl")  # both need a finished refinement run
VARIANT_LABELS = {
    "general": "General (question alone)",
    "self": "Self-informed",
    "peer": "Peer-informed",
    "pmlm": "PMLM (initial prompt)",
    "pmlm_best_edit": "PMLM + best fixed edit",
    "pmlm_rl": "PMLM + RL (edit per patient)",
}
# Paired differences every row reports: from `general`, and from `pmlm` (what refinement adds).
BASELINES = ("general", "pmlm")
_SECTIONS = {
    "general": ("knowledge", "question"),
    "self": ("instructions", "self", "knowledge", "question"),
    "peer": ("instructions", "peer", "knowledge", "question"),
    "pmlm": ("instructions", "self", "peer", "knowledge", "question"),
}

# The figures of one guidance, in the order tables show them; `higher` says which way is better.
METRICS = {
    "closeness": {"label": "Closeness to physician", "higher": True},
    "similarity": {"label": "Embedding similarity", "higher": True},
    "rouge_l": {"label": "ROUGE-L F1", "higher": True},
    "key_item_coverage": {"label": "Key-item coverage", "higher": True},
    "key_item_precision": {"label": "Key-item precision", "higher": True},
    "flag_mention_rate": {"label": "Risk flags mentioned", "higher": True},
    "safety_warning_rate": {"label": "Answers with a safety warning", "higher": False},
    "unsupported_claims": {"label": "Unsupported claims about her per answer", "higher": False},
    "words": {"label": "Length (words)", "higher": None},
    "judge": {"label": "LLM-judge rubric score", "higher": True},
}

# How guidance names a risk flag: the terms a clinician would accept as addressing it.
FLAG_TERMS = {
    "underweight": r"underweight|\bbmi\b|weight gain|nutrition",
    "overweight": r"overweight|\bbmi\b|weight",
    "obese": r"obes|\bbmi\b|weight",
    "tobacco_use": r"smok|tobacco|cigarette|nicotine",
    "secondhand_smoke": r"smok|second-?hand|passive",
    "substance_use": r"alcohol|substance|drug use|drinking",
    "high_caffeine": r"caffeine|coffee",
    "anaemia": r"an(a)?emi|haemoglobin|hemoglobin|\bhb\b|\biron\b",
    "severe_anaemia": r"an(a)?emi|haemoglobin|hemoglobin|\bhb\b|\biron\b|transfus",
    "hypertension": r"hypertens|blood pressure|\bbp\b",
    "severe_hypertension": r"hypertens|blood pressure|\bbp\b",
    "pre_eclampsia": r"pre-?eclamp",
    "pre_eclampsia_risk": r"pre-?eclamp|aspirin",
    "gestational_diabetes": r"diabet|glucose|\bgdm\b|ogtt",
    "diabetes_in_pregnancy": r"diabet|glucose|insulin",
    "urinary_infection": r"urin|\buti\b|bacteriuria",
    "gbs_positive": r"streptococ|\bgbs\b|group b",
    "rh_negative": r"\brh|rhesus|anti-?d",
    "post_term": r"post-?term|induction|overdue|41 weeks|42 weeks",
    "multiple_pregnancy": r"twin|multiple pregnancy",
    "previous_c_section": r"caesarean|cesarean|c-section|vbac|previous (caesarean|cesarean|c-section)",
    "hiv_positive": r"\bhiv\b|antiretroviral",
    "syphilis_positive": r"syphilis|penicillin",
    "hepatitis_b_positive": r"hepatitis b|\bhbv\b",
    "hepatitis_c_positive": r"hepatitis c|\bhcv\b",
    "tb_screening_positive": r"tubercul|\btb\b",
}


def variant_sections(sections: Sequence[dict], variant: str) -> list[dict]:
    """The sections of the initial prompt a variant keeps (every variant but `pmlm_rl`)."""
    if variant not in _SECTIONS:
        raise ValueError(f"Unknown prompt variant {variant!r}; known: {', '.join(_SECTIONS)}.")
    return [s for s in sections if s["source"] in _SECTIONS[variant]]


def variant_text(sections: Sequence[dict], variant: str) -> str:
    return render(variant_sections(sections, variant))


def flags_mentioned(guidance: str, flags: Sequence[dict]) -> tuple[float | None, list[str], list[str]]:
    """Share of her risk flags the guidance addresses (None when she has none), and which."""
    if not flags:
        return None, [], []
    mentioned, missed = [], []
    for flag in flags:
        pattern = FLAG_TERMS.get(flag["code"]) or "|".join(
            re.escape(w) for w in re.findall(r"[a-z]{5,}", flag["label"].lower())
        )
        (mentioned if pattern and re.search(pattern, guidance, re.IGNORECASE) else missed).append(flag["label"])
    return round(len(mentioned) / len(flags), 4), mentioned, missed


def guidance_metrics(
    guidance: str,
    recommendation: str,
    flags: Sequence[dict],
    safety_warnings: int,
    embed: Embed,
    judge: float | None = None,
    unsupported_claims: int | None = None,
) -> dict:
    """Every figure of one guidance against the physician's recommendation for the encounter;
    `unsupported_claims`: how many of its sentences grounding.py marked (None: not checked)."""
    score = score_guidance(guidance, Reference(recommendation), embed)
    flag_share, mentioned, missed = flags_mentioned(guidance, flags)
    return {
        "closeness": round(closeness(score), 4),
        "similarity": score.similarity,
        "rouge_l": score.rouge_l,
        "key_item_coverage": score.coverage,
        "key_item_precision": score.precision,
        "flag_mention_rate": flag_share,
        "safety_warning_rate": 1.0 if safety_warnings else 0.0,
        "safety_warnings": safety_warnings,
        "unsupported_claims": unsupported_claims,
        "words": len(guidance.split()),
        "judge": judge,
        "covered": score.covered,
        "missed": score.missed,
        "extra": score.extra,
        "flags_mentioned": mentioned,
        "flags_missed": missed,
    }


@dataclass(frozen=True)
class Scored:
    """One guidance's figures, with where it comes from."""

    example: str  # the encounter: variants of one example are paired
    patient: str  # the bootstrap resamples patients
    variant: str
    rag: bool
    endpoint: str
    metrics: dict


def _weights(patients: list[str], resamples: int, seed: int) -> np.ndarray:
    """How often each patient is drawn in each resample (rows: resamples, columns: patients)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(len(patients), [1 / len(patients)] * len(patients), size=resamples)


def _interval(sums: np.ndarray, counts: np.ndarray, weights: np.ndarray, level: float) -> list[float] | None:
    if not counts.any():
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (weights @ sums) / (weights @ counts)
    means = means[np.isfinite(means)]
    if not len(means):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return [round(float(low), 4), round(float(high), 4)]


def _per_patient(values: dict[str, list[float]], patients: list[str]) -> tuple[np.ndarray, np.ndarray]:
    sums = np.array([sum(values.get(p, [])) for p in patients], dtype=float)
    counts = np.array([len(values.get(p, [])) for p in patients], dtype=float)
    return sums, counts


def summarise_scores(
    scored: Sequence[Scored],
    *,
    resamples: int = 1000,
    seed: int = 7,
    level: float = 0.95,
    metrics: Sequence[str] = tuple(METRICS),
) -> list[dict]:
    """One row per (endpoint, retrieval, variant): n, the mean of each metric, its bootstrap CI,
    and the paired differences in closeness from `general` and from `pmlm`, each with its CI."""
    if not scored:
        return []
    patients = sorted({s.patient for s in scored})
    weights = _weights(patients, resamples, seed)  # one set of resamples for every row: differences stay paired
    keys = []
    for s in scored:
        key = (s.endpoint, s.rag, s.variant)
        if key not in keys:
            keys.append(key)
    keys.sort(key=lambda k: (k[0], not k[1], VARIANTS.index(k[2]) if k[2] in VARIANTS else len(VARIANTS)))
    base = {
        (s.endpoint, s.rag, s.variant, s.example): s.metrics.get("closeness") for s in scored if s.variant in BASELINES
    }
    rows = []
    for endpoint, rag, variant in keys:
        group = [s for s in scored if (s.endpoint, s.rag, s.variant) == (endpoint, rag, variant)]
        row = {
            "variant": variant,
            "rag": rag,
            "endpoint": endpoint,
            "n": len(group),
            "patients": len({s.patient for s in group}),
            "ci": {},
        }
        for metric in metrics:
            by_patient: dict[str, list[float]] = {}
            for s in group:
                value = s.metrics.get(metric)
                if value is not None:
                    by_patient.setdefault(s.patient, []).append(float(value))
            values = [v for vs in by_patient.values() for v in vs]
            row[metric] = round(float(np.mean(values)), 4) if values else None
            row["ci"][metric] = _interval(*_per_patient(by_patient, patients), weights, level) if values else None
        for baseline in BASELINES:
            pairs = [
                (s.patient, float(s.metrics["closeness"]) - base[(endpoint, rag, baseline, s.example)])
                for s in group
                if variant != baseline
                and s.metrics.get("closeness") is not None
                and base.get((endpoint, rag, baseline, s.example)) is not None
            ]
            difference = paired_difference(pairs, patients=patients, weights=weights, level=level)
            row[f"closeness_vs_{baseline}"] = difference["difference"]
            row["ci"][f"closeness_vs_{baseline}"] = difference["ci"]
        rows.append(row)
    return rows


def paired_difference(
    pairs: Sequence[tuple[object, float]],
    *,
    resamples: int = 1000,
    seed: int = 7,
    level: float = 0.95,
    patients: Sequence | None = None,
    weights: np.ndarray | None = None,
) -> dict:
    """The mean of paired differences (patient, difference) and its bootstrap interval resampling
    patients: two encounters of one woman move together. `patients` and `weights` let a table
    share one set of resamples across rows."""
    if not pairs:
        return {"difference": None, "ci": None, "n": 0, "patients": 0}
    by_patient: dict = {}
    for patient, value in pairs:
        by_patient.setdefault(patient, []).append(float(value))
    patients = list(patients) if patients is not None else sorted(by_patient, key=str)
    weights = weights if weights is not None else _weights(patients, resamples, seed)
    values = [v for vs in by_patient.values() for v in vs]
    return {
        "difference": round(float(np.mean(values)), 4),
        "ci": _interval(*_per_patient(by_patient, patients), weights, level),
        "n": len(values),
        "patients": len(by_patient),
    }
