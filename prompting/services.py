"""Personalised prompts and peer models: every surface (page, command, task, API) calls these."""

from __future__ import annotations

import pickle
import time
from collections import Counter, defaultdict
from datetime import date

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from patients import models as pm
from prompting.models import PeerModel, PeerProfile, PersonalizedPrompt, PromptTemplate
from prompting.pmlm import peers as peer_method
from prompting.pmlm.composer import PeerSummary, TemplateSpec, compose, inputs_hash
from prompting.pmlm.key_items import key_items
from prompting.pmlm.selfinformed import summarise
from prompting.pmlm.tokens import token_counter
from prompting.selectors import patient_histories, patient_history, patient_identifiers

MAX_QUESTION_CHARS = 2000
HISTORY_CHUNK = 500


class PromptError(ValueError):
    """A request for a prompt that cannot be honoured, with a message for the person asking."""


def tokenizer_dir():
    return settings.VAR_DIR / "models" / "smollm2-tokenizer"


def count_tokens(text: str) -> int:
    return token_counter(tokenizer_dir())(text)


def prompt_template_active() -> PromptTemplate:
    template = PromptTemplate.objects.filter(active=True).first()
    if template is None:
        raise PromptError("No prompt template is active: a curator activates one in the admin.")
    return template


def template_spec(template: PromptTemplate) -> TemplateSpec:
    return TemplateSpec(
        version=template.version, instructions=template.instructions, token_budget=template.token_budget,
        titles={"instructions": "Instructions", "self": template.self_title, "peer": template.peer_title,
                "knowledge": template.knowledge_title, "question": template.question_title},
    )


def peer_summary_for(patient: pm.Patient) -> tuple[PeerSummary | None, PeerModel | None]:
    profile = (PeerProfile.objects.filter(patient=patient, peer_model__active=True, peer_model__organisation_id=patient.organisation_id)
               .select_related("peer_model").first())
    if profile is None:
        return None, None
    return peer_summary(profile.basis, profile.neighbours, profile.predicted, profile.helped, profile.recommended,
                        profile.peer_model.version), profile.peer_model


def care_item_names() -> dict[str, str]:
    return dict(pm.CareItem.objects.values_list("slug", "name"))


def peer_summary(basis: str, neighbours, predicted, helped, recommended, model_version: int | None,
                 names: dict[str, str] | None = None) -> PeerSummary:
    """What the prompt says about her peers, with care items by name (`names`: read once by a caller with many)."""
    names = care_item_names() if names is None else names
    return PeerSummary(
        basis=basis,
        similarities=[float(s) for _, s in neighbours],
        predicted=[(names.get(slug, slug), float(score)) for slug, score in predicted[:3]],
        helped=[(names.get(slug, slug), float(mean), int(n)) for slug, mean, n in helped[:3]],
        recommended=[(item, float(share)) for item, share in recommended[:5]],
        model_version=model_version,
    )


def prompt_build(*, patient: pm.Patient, question: str, at: date | None = None, user=None,
                 knowledge: list[str] = ()) -> PersonalizedPrompt:
    """Build (or find, when the inputs are the same) the personalised prompt, and store it."""
    question = (question or "").strip()
    if not question:
        raise PromptError("Type a question for the prompt.")
    if len(question) > MAX_QUESTION_CHARS:
        raise PromptError(f"The question is longer than {MAX_QUESTION_CHARS} characters.")
    at = at or timezone.now().date()
    template = prompt_template_active()
    spec = template_spec(template)
    history = patient_history(patient, at)
    peer, peer_model = peer_summary_for(patient)
    fingerprint = inputs_hash(history, question, spec.version, peer, knowledge)
    existing = PersonalizedPrompt.objects.filter(patient=patient, inputs_hash=fingerprint).first()
    if existing is not None:
        return existing
    composed = compose(history, question, spec, peer=peer, knowledge=list(knowledge), count_tokens=count_tokens,
                       identifiers=patient_identifiers(patient))
    try:
        with transaction.atomic():
            return PersonalizedPrompt.objects.create(
                patient=patient, question=question, consultation_date=at, template=template, template_version=spec.version,
                peer_model=peer_model, peer_model_version=peer_model.version if peer_model else None,
                text=composed.text, sections=composed.sections, risk_flags=[f.as_dict() for f in composed.risk_flags],
                peers=composed.peers, token_count=composed.token_count, inputs_hash=fingerprint,
                created_by=user if user is not None and user.is_authenticated else None,
            )
    except IntegrityError:  # built at the same moment by another request: use that one
        return PersonalizedPrompt.objects.get(patient=patient, inputs_hash=fingerprint)


def prompt_as_json(prompt: PersonalizedPrompt) -> dict:
    """The interface DESIGN.md fixes for build_prompt --json and the API."""
    return {
        "patient": prompt.patient.external_id,
        "template_version": prompt.template_version,
        "prompt": prompt.text,
        "deidentified": True,
        "sections": prompt.sections,
        "risk_flags": prompt.risk_flags,
        "peers": prompt.peers,
    }


# --- peer model ---------------------------------------------------------------------------------------


def peer_model_create(*, organisation: pm.Organisation, user=None, parameters: dict | None = None) -> PeerModel:
    params = peer_method.PeerParameters(**(parameters or {}))
    with transaction.atomic():
        last = PeerModel.objects.select_for_update().filter(organisation=organisation).order_by("-version").first()
        return PeerModel.objects.create(organisation=organisation, version=(last.version + 1) if last else 1,
                                        parameters=params.as_dict(), created_by=user)


def peer_model_queue(*, peer_model: PeerModel):
    from prompting.tasks import train_peer_model_task

    transaction.on_commit(lambda: train_peer_model_task.delay(peer_model.pk))


def _progress(peer_model: PeerModel, percent: int, message: str):
    PeerModel.objects.filter(pk=peer_model.pk).update(progress=percent, message=message[:500])


def peer_model_train(*, peer_model_id: int, on_progress=None) -> PeerModel:
    """Train one peer model and store every patient's peers. Safe to run twice: a finished or
    failed run is left alone, and profiles are written in one transaction."""
    with transaction.atomic():
        peer_model = PeerModel.objects.select_for_update().get(pk=peer_model_id)
        if peer_model.status in pm.JobStatus.finished():
            return peer_model
        peer_model.status = pm.JobStatus.RUNNING
        peer_model.save(update_fields=["status"])

    def progress(percent, message):
        _progress(peer_model, percent, message)
        if on_progress:
            on_progress(percent, message)

    started = time.perf_counter()
    try:
        result, patient_ids = _train(peer_model, progress)
        progress(92, "Storing peers for every patient")
        artefact = settings.VAR_DIR / "models" / "peers" / f"{peer_model.organisation.slug}-v{peer_model.version}.pkl"
        artefact.parent.mkdir(parents=True, exist_ok=True)
        with open(artefact, "wb") as handle:
            pickle.dump({"svd": result.svd, "parameters": result.parameters.as_dict(), "metrics": result.metrics}, handle)
        profiles = _profiles(peer_model, result, patient_ids)
        with transaction.atomic():
            PeerProfile.objects.filter(peer_model=peer_model).delete()
            PeerProfile.objects.bulk_create(profiles, batch_size=1000)
            PeerModel.objects.filter(organisation=peer_model.organisation, active=True).update(active=False)
            peer_model.refresh_from_db()
            peer_model.status, peer_model.progress, peer_model.active = pm.JobStatus.DONE, 100, True
            peer_model.metrics = {**result.metrics, "timings": result.timings}
            peer_model.neighbour_method = result.neighbour_method
            peer_model.cohort_size = result.metrics.get("patients", 0)
            peer_model.artefact = str(artefact.relative_to(settings.VAR_DIR))
            peer_model.training_seconds = round(time.perf_counter() - started, 2)
            peer_model.message = f"Trained on {result.metrics['ratings']} ratings from {result.metrics['patients_with_ratings']} patients"
            peer_model.finished_at = timezone.now()
            peer_model.save()
    except Exception as exc:
        PeerModel.objects.filter(pk=peer_model.pk).update(status=pm.JobStatus.FAILED, message=f"Training failed: {exc}"[:2000],
                                                           finished_at=timezone.now())
        raise
    return peer_model


def _train(peer_model: PeerModel, progress):
    organisation = peer_model.organisation
    today = timezone.now().date()
    patient_ids = list(pm.Patient.objects.filter(organisation=organisation).values_list("pk", flat=True))
    if not patient_ids:
        raise PromptError("This organisation has no patients to learn from.")
    rows = pm.CareRating.objects.filter(patient__organisation=organisation).values_list(
        "patient_id", "care_item__slug", "rating", "rated_on")
    ratings = peer_method.latest_ratings([(pid, slug, float(r), (today - on).days) for pid, slug, r, on in rows])
    if len(ratings) < 10:
        raise PromptError(f"Only {len(ratings)} care ratings: too few to learn from.")
    progress(2, f"Reading clinical features of {len(patient_ids)} patients")
    features = clinical_feature_vectors(pm.Patient.objects.filter(pk__in=patient_ids), today)
    params = peer_method.PeerParameters(**peer_model.parameters)
    return peer_method.train_peer_model(ratings, features, params, progress=lambda p, m: progress(5 + int(p * 0.85), m)), patient_ids


def clinical_feature_vectors(patients, on: date) -> dict:
    """Each patient's clinical feature vector (age, parity, gestational age, BMI category, risk flags) as of a day."""
    patients = list(patients)
    features = {}
    for start in range(0, len(patients), HISTORY_CHUNK):
        for pid, history in patient_histories(patients[start:start + HISTORY_CHUNK], on).items():
            s = summarise(history)
            features[pid] = peer_method.clinical_features(
                s.age, s.parity, s.pregnancy.weeks, s.bmi.category if s.bmi else None, {f.code for f in s.flags})
    return features


class NeighbourRecords:
    """What patients' physicians recommended (as key items) and how they rated care items, read once."""

    def __init__(self, patient_ids):
        self.items: dict[int, set[str]] = defaultdict(set)
        for pid, text in pm.PhysicianRecommendation.objects.filter(patient_id__in=patient_ids).values_list("patient_id", "text"):
            self.items[pid] |= key_items(text)
        self.ratings: dict[int, dict[str, float]] = defaultdict(dict)
        for pid, slug, rating, _ in pm.CareRating.objects.filter(patient_id__in=patient_ids).order_by("rated_on").values_list(
                "patient_id", "care_item__slug", "rating", "rated_on"):
            self.ratings[pid][slug] = rating  # the latest wins

    def recommended(self, neighbour_ids) -> list[list]:
        """The key items their physicians recommended most often, with the share of neighbours."""
        with_advice = [n for n in neighbour_ids if self.items.get(n)]
        advice = Counter(item for n in with_advice for item in self.items[n])
        return [[item, round(count / len(with_advice), 2)] for item, count in advice.most_common(5)] if with_advice else []

    def helped(self, neighbour_ids) -> list[list]:
        """Care items at least two neighbours rated, with a mean of 3.5 or more, best first."""
        scores: dict[str, list[float]] = defaultdict(list)
        for n in neighbour_ids:
            for slug, rating in self.ratings.get(n, {}).items():
                scores[slug].append(rating)
        helped = sorted(([slug, round(sum(v) / len(v), 2), len(v)] for slug, v in scores.items() if len(v) >= 2),
                        key=lambda h: (-h[1], -h[2]))
        return [h for h in helped if h[1] >= 3.5][:5]


def _profiles(peer_model: PeerModel, result, patient_ids) -> list[PeerProfile]:
    """Aggregate, for each patient, what helped her neighbours and what their physicians advised."""
    records = NeighbourRecords(patient_ids)
    profiles = []
    for pid, profile in result.profiles.items():
        neighbour_ids = [n for n, _ in profile.neighbours]
        profiles.append(PeerProfile(
            peer_model=peer_model, patient_id=pid, basis=profile.basis,
            neighbours=[[n, s] for n, s in profile.neighbours], predicted=[[slug, s] for slug, s in profile.predicted],
            recommended=records.recommended(neighbour_ids), helped=records.helped(neighbour_ids),
        ))
    return profiles
