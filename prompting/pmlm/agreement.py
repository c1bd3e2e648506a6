"""Agreement between raters and win rates for blinded A/B judgements. No Django import."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from itertools import combinations


def fleiss_kappa(items: Sequence[Sequence[str]]) -> float | None:
    """Fleiss' kappa over items each judged by two or more raters (categories are any labels).

    None when there is nothing to measure (no item with two raters) or agreement by chance is
    total (every rater always chose the same single category)."""
    items = [list(judgements) for judgements in items if len(judgements) >= 2]
    if not items:
        return None
    categories = sorted({c for judgements in items for c in judgements})
    observed, totals, raters_total = [], Counter(), 0
    for judgements in items:
        n = len(judgements)
        counts = Counter(judgements)
        observed.append((sum(k * k for k in counts.values()) - n) / (n * (n - 1)))
        totals.update(counts)
        raters_total += n
    p_bar = sum(observed) / len(observed)
    p_e = sum((totals[c] / raters_total) ** 2 for c in categories)
    if p_e >= 1.0:
        return None
    return round((p_bar - p_e) / (1 - p_e), 3)


def pairwise_agreement(items: Sequence[Sequence[str]]) -> float | None:
    """The share of rater pairs, within each item, that chose the same."""
    pairs = [a == b for judgements in items for a, b in combinations(judgements, 2)]
    return round(sum(pairs) / len(pairs), 3) if pairs else None


def win_rates(choices: Sequence[str], variants: Sequence[str]) -> dict[str, float]:
    """Share of judgements won by each variant, and of ties ('' stands for a tie)."""
    if not choices:
        return {}
    counts = Counter(choices)
    rates = {variant: round(counts[variant] / len(choices), 3) for variant in variants}
    rates["tie"] = round(counts[""] / len(choices), 3)
    return rates


def _ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for position in range(start, end + 1):
            ranks[order[position]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation; None with fewer than three pairs or no spread."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return round(cov / (vx * vy) ** 0.5, 3)


def judge_clinician_agreement(
    pairs: Sequence[tuple[float, float]], *, judge_pass: float = 0.5, clinician_pass: float = 3.0
) -> dict:
    """How well an LLM judge's rubric scores (0–1) agree with clinicians' mean ratings (1–5):
    rank correlation, and agreement on which answers are acceptable (share and kappa)."""
    if not pairs:
        return {"n": 0, "spearman": None, "agreement": None, "kappa": None}
    verdicts = [
        ("ok" if judge >= judge_pass else "poor", "ok" if rating >= clinician_pass else "poor")
        for judge, rating in pairs
    ]
    return {
        "n": len(pairs),
        "spearman": spearman([j for j, _ in pairs], [r for _, r in pairs]),
        "agreement": pairwise_agreement(verdicts),
        "kappa": fleiss_kappa(verdicts),
    }
