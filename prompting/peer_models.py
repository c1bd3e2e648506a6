"""Peer models: training the recommender, storing every patient's peers, and what her peers say in her prompt.
Every surface (page, admin action, command, task) calls these."""

from __future__ import annotations

import pickle
import time
from collections import defaultdict
from datetime import date

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from patients import models as pm
from patients.jobs import job_claim, job_fail, job_finish, job_progress
from patients.services import patient_record_changed
from prompting.errors import PromptError
from prompting.models import PeerModel, PeerProfile
from prompting.pmlm import peer_advice
from prompting.pmlm import peers as peer_method
from prompting.pmlm.composer import PeerSummary
from prompting.pmlm.key_items import key_items
from prompting.pmlm.selfinformed import summarise
from prompting.selectors import patient_histories, pregnancy_histories
from prompting.tasks import train_peer_model_task

HISTORY_CHUNK = 500


def peer_summary_for(patient: pm.Patient) -> tuple[PeerSummary | None, PeerModel | None]:
    profile = (
        PeerProfile.objects.filter(
            patient=patient, peer_model__active=True, peer_model__organisation_id=patient.organisation_id
        )
        .select_related("peer_model")
        .first()
    )
    if profile is None:
        return None, None
    return peer_summary(
        profile.basis,
        profile.neighbours,
        profile.predicted,
        profile.helped,
        profile.recommended,
        profile.peer_model.version,
    ), profile.peer_model


def care_item_names() -> dict[str, str]:
    return dict(pm.CareItem.objects.values_list("slug", "name"))


def peer_summary(
    basis: str,
    neighbours,
    predicted,
    helped,
    recommended,
    model_version: int | None,
    names: dict[str, str] | None = None,
) -> PeerSummary:
    """What the prompt says about her peers, with care items by name (`names`: read once by a caller with many)."""
    names = care_item_names() if names is None else names
    return PeerSummary(
        basis=basis,
        similarities=[float(s) for _, s in neighbours],
        predicted=[(names.get(slug, slug), float(score)) for slug, score in predicted[:3]],
        # Kept by the situation they were written in; the prompt and the page read hers (peer_advice).
        helped_by_situation=peer_advice.by_situation(
            helped, lambda h: (names.get(h[0], h[0]), float(h[1]), int(h[2])), 3
        ),
        recommended_by_situation=peer_advice.by_situation(recommended, lambda r: (r[0], float(r[1])), 5),
        model_version=model_version,
    )


def peer_model_create(*, organisation: pm.Organisation, user=None, parameters: dict | None = None) -> PeerModel:
    params = peer_method.PeerParameters(**(parameters or {}))
    with transaction.atomic():
        last = PeerModel.objects.select_for_update().filter(organisation=organisation).order_by("-version").first()
        return PeerModel.objects.create(
            organisation=organisation,
            version=(last.version + 1) if last else 1,
            parameters=params.as_dict(),
            created_by=user,
        )


def peer_model_queue(*, peer_model: PeerModel):
    transaction.on_commit(lambda: train_peer_model_task.delay(peer_model.pk))


class _NoLongerOurs(Exception):
    """The sweep failed the training meanwhile: it stays failed and nothing of this run is kept."""


def peer_model_train(*, peer_model_id: int, on_progress=None) -> PeerModel:
    """Train one peer model and store every patient's peers. Safe to run twice: a finished or
    failed run is left alone, and profiles are written in one transaction."""
    peer_model = job_claim(PeerModel, peer_model_id)
    if peer_model is None:
        return PeerModel.objects.get(pk=peer_model_id)

    def progress(percent, message):
        if not job_progress(peer_model, percent, message):
            raise _NoLongerOurs()
        if on_progress:
            on_progress(percent, message)

    started = time.perf_counter()
    try:
        result, patient_ids = _train(peer_model, progress)
        progress(92, "Storing peers for every patient")
        artefact = settings.VAR_DIR / "models" / "peers" / f"{peer_model.organisation.slug}-v{peer_model.version}.pkl"
        artefact.parent.mkdir(parents=True, exist_ok=True)
        with open(artefact, "wb") as handle:
            pickle.dump(
                {"svd": result.svd, "parameters": result.parameters.as_dict(), "metrics": result.metrics}, handle
            )
        profiles = _profiles(peer_model, result, patient_ids)
        with transaction.atomic():
            PeerModel.objects.filter(organisation=peer_model.organisation, active=True).update(active=False)
            finished = job_finish(
                peer_model,
                active=True,
                metrics={**result.metrics, "timings": result.timings},
                neighbour_method=result.neighbour_method,
                cohort_size=result.metrics.get("patients", 0),
                artefact=str(artefact.relative_to(settings.VAR_DIR)),
                training_seconds=round(time.perf_counter() - started, 2),
                message=(
                    f"Trained on {result.metrics['ratings']} ratings from {result.metrics['patients_with_ratings']} "
                    "patients"
                ),
            )
            if not finished:
                raise _NoLongerOurs()  # rolls back the models it deactivated
            PeerProfile.objects.filter(peer_model=peer_model).delete()
            PeerProfile.objects.bulk_create(profiles, batch_size=1000)
            patient_record_changed(organisation_id=peer_model.organisation_id)  # her record page shows new peers
    except _NoLongerOurs:
        pass
    except Exception as exc:
        job_fail(peer_model, f"{exc.__class__.__name__}: {exc}")
        raise
    return PeerModel.objects.get(pk=peer_model.pk)


def _train(peer_model: PeerModel, progress):
    organisation = peer_model.organisation
    today = timezone.now().date()
    patient_ids = list(pm.Patient.objects.filter(organisation=organisation).values_list("pk", flat=True))
    if not patient_ids:
        raise PromptError("This organisation has no patients to learn from.")
    rows = pm.CareRating.objects.filter(patient__organisation=organisation).values_list(
        "patient_id", "care_item__slug", "rating", "rated_on"
    )
    ratings = peer_method.latest_ratings([(pid, slug, float(r), (today - on).days) for pid, slug, r, on in rows])
    if len(ratings) < 10:
        raise PromptError(f"Only {len(ratings)} care ratings: too few to learn from.")
    progress(2, f"Reading clinical features of {len(patient_ids)} patients")
    features = clinical_feature_vectors(pm.Patient.objects.filter(pk__in=patient_ids), today)
    params = peer_method.PeerParameters(**peer_model.parameters)
    return peer_method.train_peer_model(
        ratings, features, params, progress=lambda p, m: progress(5 + int(p * 0.85), m)
    ), patient_ids


def clinical_feature_vectors(patients, on: date) -> dict:
    """Each patient's clinical feature vector (age, parity, gestational age, BMI category, risk flags) as of a day."""
    patients = list(patients)
    features = {}
    for start in range(0, len(patients), HISTORY_CHUNK):
        for pid, history in patient_histories(patients[start : start + HISTORY_CHUNK], on).items():
            s = summarise(history)
            features[pid] = peer_method.clinical_features(
                s.age, s.parity, s.pregnancy.weeks, s.bmi.category if s.bmi else None, {f.code for f in s.flags}
            )
    return features


class NeighbourRecords:
    """What patients' physicians recommended (as key items) and how they rated care items, read once,
    each with the situation it was written in: her pregnancy that day (peer_advice)."""

    def __init__(self, patient_ids, on: date | None = None):
        on = on or timezone.now().date()
        situations = peer_advice.SituationsAt(pregnancy_histories(list(patient_ids), on), on)
        self.advice: dict[int, list] = defaultdict(list)
        for pid, text, written in pm.PhysicianRecommendation.objects.filter(patient_id__in=patient_ids).values_list(
            "patient_id", "text", "written_at"
        ):
            self.advice[pid].append((situations(pid, written), key_items(text)))
        self.ratings: dict[int, dict[str, float]] = defaultdict(dict)
        self.rated: dict[int, list] = defaultdict(list)
        for pid, slug, rating, rated_on in (
            pm.CareRating.objects.filter(patient_id__in=patient_ids)
            .order_by("rated_on")
            .values_list("patient_id", "care_item__slug", "rating", "rated_on")
        ):
            self.ratings[pid][slug] = rating  # the latest wins
            self.rated[pid].append((situations(pid, rated_on), slug, rating))

    def recommended(self, neighbour_ids) -> dict[str, list[list]]:
        """By situation, the key items their physicians recommended most often, with the share of neighbours."""
        return peer_advice.advice_shares(self.advice, neighbour_ids)

    def helped(self, neighbour_ids) -> dict[str, list[list]]:
        """Pregnant and not pregnant: care items at least two neighbours rated there, with a mean of 3.5 or more,
        best first."""
        return peer_advice.helped_shares(self.rated, neighbour_ids)


def _profiles(peer_model: PeerModel, result, patient_ids) -> list[PeerProfile]:
    """Aggregate, for each patient, what helped her neighbours and what their physicians advised."""
    records = NeighbourRecords(patient_ids)
    profiles = []
    for pid, profile in result.profiles.items():
        neighbour_ids = [n for n, _ in profile.neighbours]
        profiles.append(
            PeerProfile(
                peer_model=peer_model,
                patient_id=pid,
                basis=profile.basis,
                neighbours=[[n, s] for n, s in profile.neighbours],
                predicted=[[slug, s] for slug, s in profile.predicted],
                recommended=records.recommended(neighbour_ids),
                helped=records.helped(neighbour_ids),
            )
        )
    return profiles
