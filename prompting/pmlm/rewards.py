"""Rewards for prompt refinement: how close the guidance a prompt produced comes to what the
physician recommended, minus penalties for an unsafe or broken refined prompt. No Django import.

The score compares the target LLM's guidance with the encounter's physician recommendation by
meaning (all-MiniLM-L6-v2 cosine), by wording (ROUGE-L F1) and by clinical content: the key items
(`key_items.py`) it shares with the physician, as an F1 of coverage (the share of her physician's
items the guidance names) and precision (the share of the items the guidance names that her
physician named). Precision is what keeps the reward honest: a prompt that makes the model list
every item covers everything and is precise about nothing. Clinician ratings, when the workspace has
collected some for the patient, add two references: guidance they rated well pulls the reward
up, guidance they rated poorly pushes it down.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache

import numpy as np

from .key_items import key_items

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> unit vectors, one row each


@dataclass(frozen=True)
class Reference:
    """What the guidance is judged against for one encounter."""

    recommendation: str
    endorsed: tuple[str, ...] = ()  # guidance clinicians rated well for this patient
    rejected: tuple[str, ...] = ()  # guidance clinicians rated poorly


@dataclass(frozen=True)
class RewardWeights:
    similarity: float = 0.5
    rouge_l: float = 0.25
    key_items: float = 0.25  # the F1 of key-item coverage and precision
    clinician: float = 0.3  # share of the score that comes from clinician references, when present
    dropped_flag: float = 1.0  # each
    dropped_fact: float = 0.5  # each
    identifier: float = 2.0
    over_budget: float = 0.5
    malformed: float = 1.0
    invented_number: float = 0.25  # each
    invented_finding: float = 0.5  # each

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RewardWeights:
        """Weights stored with a run; names this version no longer has are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in names})


@dataclass
class GuidanceScore:
    similarity: float
    rouge_l: float
    coverage: float | None  # None when the physician's text names no key item
    clinician: float | None = None  # similarity to endorsed minus rejected guidance, when rated
    covered: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    precision: float | None = None  # None when the guidance names no key item
    extra: list[str] = field(default_factory=list)  # items the guidance names that the physician did not

    @property
    def key_item_f1(self) -> float | None:
        """None when neither text names a key item; 0 when only one of them does."""
        if self.coverage is None and self.precision is None:
            return None
        if not self.coverage or not self.precision:
            return 0.0
        return 2 * self.coverage * self.precision / (self.coverage + self.precision)

    def as_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def _rouge():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)


def rouge_l(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (longest common subsequence of stemmed words)."""
    if not candidate.strip() or not reference.strip():
        return 0.0
    return float(_rouge().score(reference, candidate)["rougeL"].fmeasure)


@dataclass(frozen=True)
class KeyItemMatch:
    coverage: float | None  # share of the physician's items named; None: she named none
    precision: float | None  # share of the named items she named too; None: the guidance names none
    covered: list[str]
    missed: list[str]
    extra: list[str]


def key_item_match(candidate: str, reference: str) -> KeyItemMatch:
    wanted, found = key_items(reference), key_items(candidate)
    return KeyItemMatch(
        len(wanted & found) / len(wanted) if wanted else None,
        len(wanted & found) / len(found) if found else None,
        sorted(wanted & found),
        sorted(wanted - found),
        sorted(found - wanted),
    )


def score_guidance(guidance: str, reference: Reference, embed: Embed) -> GuidanceScore:
    if not guidance.strip():
        return GuidanceScore(0.0, 0.0, 0.0 if key_items(reference.recommendation) else None)
    texts = [guidance, reference.recommendation, *reference.endorsed, *reference.rejected]
    vectors = embed(texts)
    similarities = vectors[1:] @ vectors[0]
    similarity = max(0.0, float(similarities[0]))
    clinician = None
    if reference.endorsed or reference.rejected:
        endorsed = similarities[1 : 1 + len(reference.endorsed)]
        rejected = similarities[1 + len(reference.endorsed) :]
        clinician = (float(endorsed.mean()) if len(endorsed) else 0.0) - (
            float(rejected.mean()) if len(rejected) else 0.0
        )
    items = key_item_match(guidance, reference.recommendation)
    return GuidanceScore(
        round(similarity, 4),
        round(rouge_l(guidance, reference.recommendation), 4),
        _round(items.coverage),
        _round(clinician),
        items.covered,
        items.missed,
        _round(items.precision),
        items.extra,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def closeness(score: GuidanceScore, weights: RewardWeights = RewardWeights()) -> float:
    """How close the guidance is to the physician (0–1), with clinician references blended in."""
    parts = [(weights.similarity, score.similarity), (weights.rouge_l, score.rouge_l)]
    if score.key_item_f1 is not None:
        parts.append((weights.key_items, score.key_item_f1))
    automatic = sum(w * v for w, v in parts) / sum(w for w, _ in parts)
    if score.clinician is None:
        return automatic
    return (1 - weights.clinician) * automatic + weights.clinician * score.clinician


def penalty(problems: Sequence, weights: RewardWeights = RewardWeights()) -> float:
    """The total penalty for the problems a refined prompt has (see refine.check_refined)."""
    return sum(getattr(weights, problem.kind) for problem in problems)


def reward(score: GuidanceScore | None, problems: Sequence = (), weights: RewardWeights = RewardWeights()) -> float:
    """The scalar the policy maximises. Malformed output never reaches the LLM: its score is None."""
    return round((closeness(score, weights) if score is not None else 0.0) - penalty(problems, weights), 4)
