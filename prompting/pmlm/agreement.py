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
