"""Encounters a physician wrote a recommendation for, asked as the evaluation and refinement ask them.

Refinement runs learn from these encounters and evaluations measure on them, so both build their
prompts here, the same way, and ask the target LLM through the same answer cache: a prompt the
refinement run validated is answered once, and the evaluation reads the same answer.

- Patients are split by the shared hold-out rule (`pmlm.holdout`): refinement learns from the
  learning patients, and validation and evaluation use the held-out ones.
- Her peers come from learning patients only, matched on clinical features as any patient new
  to the peer model is. A learning patient's peers come from the other learning patients
  (two folds), so that no one is ever her own peer.
- Each encounter is asked as of its date, with or without retrieved guidance sources.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import date

from django.conf import settings
from django.utils import timezone

from patients import models as pm
from prompting.consultation import guidance_messages, guidance_passages, passage_texts
from prompting.endpoints import endpoint_named
from prompting.llm import build_backend
from prompting.llm.cache import CachedGenerator
from prompting.models import PeerModel
from prompting.peer_models import NeighbourRecords, care_item_names, clinical_feature_vectors, peer_summary
from prompting.pmlm import peers as peer_method
from prompting.pmlm.composer import ComposedPrompt, TemplateSpec, compose
from prompting.pmlm.holdout import split_patients
from prompting.pmlm.state import Pregnancy, current_pregnancy
from prompting.prompts import count_tokens
from prompting.selectors import patient_history, patient_identifiers

# The question a physician answered at an antenatal encounter, asked of every example.
ENCOUNTER_QUESTION = "What do you recommend for her at this antenatal visit?"
EXAMPLES_PER_PATIENT = 2


@dataclass
class EncounterPrompt:
    """The initial prompt of one encounter, with what scoring and the guard need beside it."""

    recommendation: pm.PhysicianRecommendation
    at: date
    rag: bool
    composed: ComposedPrompt
    flags: list[dict]
    identifiers: list[str]
    history: object
    pregnancy: Pregnancy

    @property
    def patient(self) -> pm.Patient:
        return self.recommendation.patient


def encounter_date(rec: pm.PhysicianRecommendation) -> date:
    return (rec.encounter.period_start or rec.written_at).date()


def patient_split(organisation: pm.Organisation, *, seed: int, share: float) -> tuple[list[int], list[int]]:
    """(learning, held-out) patient ids of the organisation, by the shared hold-out rule."""
    return split_patients(
        list(pm.Patient.objects.filter(organisation=organisation).values_list("pk", flat=True)), share=share, seed=seed
    )


def encounters_of(
    patient_ids: list[int],
    *,
    seed: int,
    limit_patients: int | None = None,
    exclude: set[int] = frozenset(),
    per_patient: int = EXAMPLES_PER_PATIENT,
) -> list[pm.PhysicianRecommendation]:
    """At most `per_patient` encounters with a recommendation per patient (seeded), in the order of `patient_ids`."""
    by_patient: dict[int, list] = defaultdict(list)
    for rec in (
        pm.PhysicianRecommendation.objects.filter(patient_id__in=patient_ids)
        .exclude(patient_id__in=exclude)
        .select_related("encounter", "patient")
        .order_by("pk")
    ):
        by_patient[rec.patient_id].append(rec)
    chosen_patients = [pid for pid in patient_ids if pid in by_patient][:limit_patients]
    rng = random.Random(seed)
    return [
        rec for pid in chosen_patients for rec in rng.sample(by_patient[pid], min(per_patient, len(by_patient[pid])))
    ]


def held_out_encounters(
    *,
    organisation: pm.Organisation,
    seed: int,
    share: float,
    limit_patients: int | None = None,
    exclude: set[int] = frozenset(),
) -> tuple[list[pm.PhysicianRecommendation], list[int], list[int]]:
    """(recommendations to evaluate, learning patient ids, held-out patient ids)."""
    learning, held_out = patient_split(organisation, seed=seed, share=share)
    return encounters_of(held_out, seed=seed, limit_patients=limit_patients, exclude=exclude), learning, held_out


def held_out_peers(*, organisation: pm.Organisation, learning: list[int], patients: list[int], on: date) -> dict:
    """Peers of `patients` from the `learning` patients only: the nearest on clinical features,
    what helped them and what their physicians recommended."""
    learning = [p for p in learning if p not in set(patients)]
    if not patients or not learning:
        return {}
    active = PeerModel.objects.filter(organisation=organisation, active=True).first()
    k = (active.parameters.get("k") if active else None) or peer_method.PeerParameters.k
    features = clinical_feature_vectors(pm.Patient.objects.filter(pk__in=[*learning, *patients]), on)
    records, own = NeighbourRecords(learning), NeighbourRecords(patients)
    profiles = peer_method.unseen_profiles(
        {p: features[p] for p in learning if p in features},
        records.ratings,
        {p: features[p] for p in patients if p in features},
        own.ratings,
        k=k,
    )
    summaries, names = {}, care_item_names()
    for pid, profile in profiles.items():
        ids = [n for n, _ in profile.neighbours]
        summaries[pid] = peer_summary(
            profile.basis,
            profile.neighbours,
            profile.predicted,
            records.helped(ids),
            records.recommended(ids),
            None,
            names,
        )
    return summaries


def learning_peers(*, organisation: pm.Organisation, learning: list[int], patients: list[int], on: date) -> dict:
    """Peers of learning patients from the other learning patients, in two folds: nobody is her own peer."""
    folds = (patients[0::2], patients[1::2])
    peers = {}
    for fold in folds:
        peers.update(held_out_peers(organisation=organisation, learning=learning, patients=fold, on=on))
    return peers


def encounter_prompt(
    rec: pm.PhysicianRecommendation, *, spec: TemplateSpec, peer, rag: bool, question: str = ENCOUNTER_QUESTION
) -> EncounterPrompt:
    """The initial personalised prompt of an encounter, as of its date."""
    at = encounter_date(rec)
    history = patient_history(rec.patient, at)
    pregnancy = current_pregnancy(history)
    identifiers = patient_identifiers(rec.patient)
    knowledge = passage_texts(chunk for chunk, _ in guidance_passages(question, history, pregnancy)) if rag else []
    composed = compose(
        history, question, spec, peer=peer, count_tokens=count_tokens, identifiers=identifiers, knowledge=knowledge
    )
    return EncounterPrompt(
        rec, at, rag, composed, [f.as_dict() for f in composed.risk_flags], identifiers, history, pregnancy
    )


def peers_today() -> date:
    """The day peers are matched on (clinical features as of today, as the evaluation always has)."""
    return timezone.now().date()


# --- the target LLM, greedy and cached -------------------------------------------------------------------


def endpoint_generator(endpoint_name: str, max_tokens: int) -> CachedGenerator:
    """An endpoint answering greedily, cached by the hash of its messages: the same question is asked once."""
    endpoint = endpoint_named(endpoint_name)
    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    return CachedGenerator(
        backend,
        settings.VAR_DIR / "cache" / "target-llm" / endpoint.name,
        max_tokens=max_tokens,
        temperature=0.0,
        model_key=f"{endpoint.kind}:{sorted(endpoint.settings.items())}",
    )


class TargetAnswerer:
    """The target LLM answering a prompt as a guidance request would (greedy, cached by prompt hash);
    `calls` counts the distinct prompts it was asked, `cache.misses` those the cache did not hold yet."""

    def __init__(self, endpoint_name: str, max_tokens: int | None = None):
        self.max_tokens = max_tokens or endpoint_named(endpoint_name).max_tokens
        self.cache = endpoint_generator(endpoint_name, self.max_tokens)
        self.prompts: set[str] = set()

    def __call__(self, prompt_text: str) -> str:
        self.prompts.add(prompt_text)
        return self.cache.generate(guidance_messages(prompt_text))

    @property
    def calls(self) -> int:
        return len(self.prompts)


def target_answerer(endpoint_name: str, max_tokens: int | None = None) -> TargetAnswerer:
    return TargetAnswerer(endpoint_name, max_tokens)
