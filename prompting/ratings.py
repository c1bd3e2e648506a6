"""Clinicians' judgements of guidance: structured ratings and blinded A/B comparisons.

Ratings feed the refinement rewards (guidance rated well or poorly becomes a reference); A/B
picks give win rates per variant and agreement between raters.
"""

from __future__ import annotations

import random
import uuid
from collections import defaultdict
from datetime import date

from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from patients import models as pm
from prompting.endpoints import endpoint_default
from prompting.guidance import guidance_request_create
from prompting.models import RATING_SCALES, ABComparison, ABJudgement, ClinicianRating, GuidanceRequest, LLMEndpoint
from prompting.pmlm.agreement import fleiss_kappa, pairwise_agreement, win_rates
from prompting.refinement import promoted_run


class RatingError(ValueError):
    pass


def guidance_rate(
    *, guidance: GuidanceRequest, rater, scores: dict[str, int], would_follow: bool | None = None, comment: str = ""
) -> ClinicianRating:
    """Store (or update) this clinician's rating of this guidance."""
    if guidance.status != pm.JobStatus.DONE:
        raise RatingError("Only finished guidance can be rated.")
    missing = [s for s in RATING_SCALES if s not in scores]
    if missing:
        raise RatingError(f"Rate every scale: {', '.join(missing)}.")
    bad = [s for s in RATING_SCALES if not isinstance(scores[s], int) or not 1 <= scores[s] <= 5]
    if bad:
        raise RatingError(f"Ratings are whole numbers from 1 to 5 ({', '.join(bad)}).")
    with transaction.atomic():
        rating, _ = ClinicianRating.objects.update_or_create(
            guidance=guidance,
            rater=rater,
            defaults={
                **{s: scores[s] for s in RATING_SCALES},
                "would_follow": would_follow,
                "comment": comment.strip()[:4000],
            },
        )
        audit_record(
            AuditAction.RATE_GUIDANCE, obj=guidance, actor=rater, organisation_id=guidance.patient.organisation_id
        )
    return rating


# --- blinded A/B -------------------------------------------------------------------------------------


def ab_kinds_available(patient: pm.Patient, endpoints: list[LLMEndpoint] | None = None) -> list[tuple[str, str]]:
    """The A/B comparisons that make sense here: an endpoint pair needs an open and a proprietary
    (or at least two) endpoints; initial vs refined needs a promoted policy. `endpoints`: the active ones, when
    the page has read them already."""
    kinds = [(ABComparison.Kind.RETRIEVAL, ABComparison.Kind.RETRIEVAL.label)]
    active = len(endpoints) if endpoints is not None else LLMEndpoint.objects.filter(active=True).count()
    if active >= 2:
        kinds.append((ABComparison.Kind.ENDPOINT, ABComparison.Kind.ENDPOINT.label))
    if promoted_run(patient.organisation_id) is not None:
        kinds.append((ABComparison.Kind.REFINEMENT, ABComparison.Kind.REFINEMENT.label))
    return kinds


def _endpoint_pair() -> tuple[LLMEndpoint, LLMEndpoint]:
    active = list(LLMEndpoint.objects.filter(active=True))
    open_ = [e for e in active if e.openness == LLMEndpoint.Openness.OPEN]
    closed = [e for e in active if e.openness == LLMEndpoint.Openness.PROPRIETARY]
    if open_ and closed:
        return open_[0], closed[0]
    if len(active) >= 2:
        return active[0], active[1]
    raise RatingError("Comparing models needs two active LLM endpoints.")


def ab_comparison_create(
    *, patient: pm.Patient, question: str, kind: str, at: date | None = None, user=None
) -> ABComparison:
    """Queue two guidance requests that differ in one thing and pair them, in random order."""
    if kind not in ABComparison.Kind.values:
        raise RatingError(f"Unknown comparison {kind!r}.")
    if kind not in dict(ab_kinds_available(patient)):
        raise RatingError(
            "That comparison is not available here (it needs two endpoints, or a promoted refinement policy)."
        )
    if kind == ABComparison.Kind.RETRIEVAL:
        endpoint = endpoint_default()
        variants = [
            ("with guidance sources", dict(endpoint=endpoint, use_retrieval=True)),
            ("without guidance sources", dict(endpoint=endpoint, use_retrieval=False)),
        ]
    elif kind == ABComparison.Kind.ENDPOINT:
        first, second = _endpoint_pair()
        variants = [
            (f"{first.name} ({first.get_openness_display().lower()})", dict(endpoint=first)),
            (f"{second.name} ({second.get_openness_display().lower()})", dict(endpoint=second)),
        ]
    else:
        endpoint = endpoint_default()
        variants = [
            ("RL-refined prompt", dict(endpoint=endpoint, use_refinement=True)),
            ("initial prompt", dict(endpoint=endpoint, use_refinement=False)),
        ]
    random.SystemRandom().shuffle(variants)  # the clinician must not learn which side is which
    key = uuid.uuid4().hex[:12]
    with transaction.atomic():
        guidance = [
            guidance_request_create(
                patient=patient,
                question=question,
                at=at or timezone.now().date(),
                user=user,
                idempotency_key=f"ab-{key}-{n}",
                **options,
            )
            for n, (_, options) in enumerate(variants)
        ]
        comparison = ABComparison.objects.create(
            patient=patient,
            question=guidance[0].question,
            kind=kind,
            guidance_a=guidance[0],
            guidance_b=guidance[1],
            variant_a=variants[0][0],
            variant_b=variants[1][0],
            created_by=user,
        )
        audit_record(
            AuditAction.AB_COMPARE, obj=comparison, organisation_id=patient.organisation_id, details={"kind": kind}
        )
        return comparison


def ab_judge(*, comparison: ABComparison, rater, choice: str, comment: str = "") -> ABJudgement:
    if choice not in ABJudgement.Choice.values:
        raise RatingError("Pick A, B or about the same.")
    if {comparison.guidance_a.status, comparison.guidance_b.status} != {pm.JobStatus.DONE}:
        raise RatingError("Wait until both answers are finished.")
    with transaction.atomic():
        judgement, _ = ABJudgement.objects.update_or_create(
            comparison=comparison, rater=rater, defaults={"choice": choice, "comment": comment.strip()[:4000]}
        )
        audit_record(
            AuditAction.AB_PICK, obj=comparison, actor=rater, organisation_id=comparison.patient.organisation_id
        )
    return judgement


def ab_summary(*, organisation: pm.Organisation) -> list[dict]:
    """Per kind of comparison: judgements, win rate of each variant, agreement between raters."""
    judgements = ABJudgement.objects.filter(comparison__patient__organisation=organisation).select_related("comparison")
    by_kind: dict[str, list[ABJudgement]] = defaultdict(list)
    for judgement in judgements:
        by_kind[judgement.comparison.kind].append(judgement)
    rows = []
    for kind, label in ABComparison.Kind.choices:
        found = by_kind.get(kind, [])
        variants = sorted({v for j in found for v in (j.comparison.variant_a, j.comparison.variant_b)})
        per_item: dict[int, list[str]] = defaultdict(list)
        for j in found:
            per_item[j.comparison_id].append(j.preferred_variant or "tie")
        multi = [choices for choices in per_item.values() if len(choices) >= 2]
        rows.append(
            {
                "kind": kind,
                "label": label,
                "judgements": len(found),
                "comparisons": len(per_item),
                "win_rates": win_rates([j.preferred_variant for j in found], variants),
                "double_rated": len(multi),
                "agreement": pairwise_agreement(multi),
                "kappa": fleiss_kappa(multi),
            }
        )
    return rows
