"""Peer-informed personalisation: who is like her, and what helped them (Surprise).

KNNBaseline (user-based, pearson_baseline) finds neighbours; SVD predicts her ratings of care
items she has not tried. Surprise computes the whole user×user similarity matrix (n² floats), so
above `knn_limit` patients neighbours come from the SVD user factors with a blockwise cosine
nearest-neighbour search instead. Patients with few ratings (cold start) get neighbours from
clinical features. Keys are opaque patient keys: no identity enters or leaves this module.
"""

from __future__ import annotations

import random
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from surprise import SVD, Dataset, KNNBaseline, Reader
from surprise.dataset import DatasetAutoFolds

MIN_RATINGS = 3  # fewer than this and she is a cold-start patient
RELEVANT = 4  # a rating of 4 or 5 means the item helped
RECOMMEND_AT = 4.0  # an estimate at least this high is a recommendation: predicted to help


@dataclass
class PeerParameters:
    k: int = 20
    svd_factors: int = 10
    svd_epochs: int = 50
    svd_lr: float = 0.01
    svd_reg: float = 0.1
    test_fraction: float = 0.2
    knn_limit: int = 15000  # Surprise needs about 3.6 GB at 10k patients, growing with n²
    seed: int = 7

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PeerProfile:
    """What the prompt needs about one patient's peers: precomputed, stored as a row."""

    basis: str  # "ratings" or "features"
    neighbours: list[tuple[int, float]]  # (patient key, similarity), best first
    predicted: list[tuple[str, float]]  # (care item, predicted rating) for items she has not tried

    @property
    def cohort_size(self) -> int:
        return len(self.neighbours)

    @property
    def mean_similarity(self) -> float:
        return float(np.mean([s for _, s in self.neighbours])) if self.neighbours else 0.0


@dataclass
class PeerTraining:
    parameters: PeerParameters
    metrics: dict
    profiles: dict[int, PeerProfile]
    neighbour_method: str  # "knn-matrix" or "svd-factors"
    svd: SVD | None = None
    knn: KNNBaseline | None = None
    timings: dict = field(default_factory=dict)


Rating = tuple[int, str, float]  # (patient key, item, rating)


def latest_ratings(ratings: list[tuple[int, str, float, int]]) -> list[Rating]:
    """One rating per patient and item: the most recent (ratings given as (key, item, rating, days_ago))."""
    latest: dict[tuple[int, str], tuple[int, float]] = {}
    for key, item, rating, days_ago in ratings:
        current = latest.get((key, item))
        if current is None or days_ago < current[0]:
            latest[(key, item)] = (days_ago, rating)
    return [(key, item, rating) for (key, item), (_, rating) in latest.items()]


class _RatingsDataset(DatasetAutoFolds):
    """Surprise's dataset from a plain list (its own constructors want a file or pandas)."""

    def __init__(self, ratings: list[Rating]):
        Dataset.__init__(self, Reader(rating_scale=(1, 5)))
        self.has_been_split = False
        self.raw_ratings = [(key, item, float(rating), None) for key, item, rating in ratings]


def _split(ratings: list[Rating], fraction: float, seed: int) -> tuple[list[Rating], list[Rating]]:
    shuffled = list(ratings)
    random.Random(seed).shuffle(shuffled)
    cut = int(len(shuffled) * (1 - fraction))
    return shuffled[:cut], shuffled[cut:]


def _fit(ratings: list[Rating], params: PeerParameters, with_knn: bool):
    data = _RatingsDataset(ratings)
    trainset = data.build_full_trainset()
    svd = SVD(
        n_factors=params.svd_factors,
        n_epochs=params.svd_epochs,
        lr_all=params.svd_lr,
        reg_all=params.svd_reg,
        random_state=params.seed,
    )
    svd.fit(trainset)
    knn = None
    if with_knn:
        knn = KNNBaseline(
            k=params.k,
            sim_options={"name": "pearson_baseline", "user_based": True, "shrinkage": 10},
            bsl_options={"method": "als", "n_epochs": 10},
            verbose=False,
        )
        knn.fit(trainset)
    return trainset, svd, knn


def _rmse_mae(pairs: list[tuple[float, float]]) -> tuple[float, float]:
    errors = np.array([p - t for p, t in pairs])
    return float(np.sqrt(np.mean(errors**2))), float(np.mean(np.abs(errors)))


def _precision_at_5(predictions: dict[int, list[tuple[float, float]]], constant: bool = False) -> tuple[float, float]:
    """Surprise's precision@k (its FAQ), k = 5, with "recommended" meaning predicted to help
    (estimate ≥ 4) and "relevant" meaning she rated it 4 or 5.

    Averaged over the held-out patients the model recommends something to (precision is undefined
    for the others); the share of such patients is returned as coverage. A constant predictor
    (global mean) cannot rank, so its top 5 are her held-out items in random order.
    """
    scores, covered = [], 0
    for items in predictions.values():
        top = sorted(items, key=lambda p: -p[0])[:5]
        recommended = [truth for estimate, truth in top if constant or estimate >= RECOMMEND_AT]
        if recommended:
            covered += 1
            scores.append(sum(1 for truth in recommended if truth >= RELEVANT) / len(recommended))
    return (float(np.mean(scores)) if scores else 0.0), (covered / len(predictions) if predictions else 0.0)


def evaluate(train: list[Rating], test: list[Rating], params: PeerParameters, with_knn: bool) -> dict:
    """Held-out RMSE, MAE and precision@5 of SVD (and KNNBaseline) against two baselines."""
    _, svd, knn = _fit(train, params, with_knn)
    global_mean = float(np.mean([r for _, _, r in train]))
    by_item: dict[str, list[float]] = defaultdict(list)
    for _, item, rating in train:
        by_item[item].append(rating)
    item_mean = {item: float(np.mean(values)) for item, values in by_item.items()}
    rng = random.Random(params.seed)
    models = {
        "svd": lambda key, item: svd.predict(key, item).est,
        "global_mean": lambda key, item: global_mean + rng.uniform(-1e-9, 1e-9),  # ties broken at random
        "item_mean": lambda key, item: item_mean.get(item, global_mean),
    }
    if knn is not None:
        models["knn_baseline"] = lambda key, item: knn.predict(key, item).est
    metrics = {"train_ratings": len(train), "test_ratings": len(test)}
    for name, predict in models.items():
        pairs, per_patient = [], defaultdict(list)
        for key, item, truth in test:
            estimate = predict(key, item)
            pairs.append((estimate, truth))
            per_patient[key].append((estimate, truth))
        rmse, mae = _rmse_mae(pairs)
        precision, coverage = _precision_at_5(per_patient, constant=name == "global_mean")
        metrics[name] = {
            "rmse": round(rmse, 4),
            "mae": round(mae, 4),
            "precision_at_5": round(precision, 4),
            "coverage": round(coverage, 4),
        }
    return metrics


def _cosine_top_k(
    vectors: np.ndarray, rows: list[int], k: int, block: int = 1024
) -> dict[int, list[tuple[int, float]]]:
    """For each row index, the k most cosine-similar other rows (blockwise: memory stays O(block × n))."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = vectors / np.where(norms == 0, 1, norms)
    out = {}
    for start in range(0, len(rows), block):
        chunk = rows[start : start + block]
        sims = unit[chunk] @ unit.T
        for offset, row in enumerate(chunk):
            sims[offset, row] = -np.inf
        top = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        for offset, row in enumerate(chunk):
            ranked = sorted(((int(j), float(sims[offset, j])) for j in top[offset]), key=lambda p: -p[1])
            out[row] = [(j, s) for j, s in ranked if s > 0 and np.isfinite(s)]
    return out


def train_peer_model(
    ratings: list[Rating], features: dict[int, np.ndarray], params: PeerParameters | None = None, progress=None
) -> PeerTraining:
    """Train, evaluate on held-out ratings, refit on everything and precompute every patient's peers.

    `features` holds a clinical feature vector for every patient (cold start uses it); keys of
    `ratings` and `features` are the same opaque patient keys.
    """
    params = params or PeerParameters()
    progress = progress or (lambda percent, message: None)
    timings = {}
    users = {key for key, _, _ in ratings}
    with_knn = len(users) <= params.knn_limit

    started = time.perf_counter()
    progress(5, f"Evaluating on {int(len(ratings) * params.test_fraction)} held-out ratings")
    train, test = _split(ratings, params.test_fraction, params.seed)
    metrics = evaluate(train, test, params, with_knn)
    timings["evaluate_s"] = round(time.perf_counter() - started, 3)

    progress(40, f"Training on {len(ratings)} ratings from {len(users)} patients")
    started = time.perf_counter()
    trainset, svd, knn = _fit(ratings, params, with_knn)
    timings["fit_s"] = round(time.perf_counter() - started, 3)

    progress(70, "Finding neighbours")
    started = time.perf_counter()
    rated: dict[int, dict[str, float]] = defaultdict(dict)
    for key, item, rating in ratings:
        rated[key][item] = rating
    warm = [key for key, items in rated.items() if len(items) >= MIN_RATINGS]
    inner = {key: trainset.to_inner_uid(key) for key in warm}
    profiles: dict[int, PeerProfile] = {}
    if with_knn:
        method = "knn-matrix"
        sim = knn.sim
        for key in warm:
            row = sim[inner[key]].copy()
            row[inner[key]] = -np.inf
            top = np.argpartition(-row, min(params.k, len(row) - 1))[: params.k]
            ranked = sorted(((int(j), float(row[j])) for j in top if row[j] > 0), key=lambda p: -p[1])
            profiles[key] = PeerProfile("ratings", [(trainset.to_raw_uid(j), round(s, 4)) for j, s in ranked], [])
    else:
        method = "svd-factors"
        rows = [inner[key] for key in warm]
        found = _cosine_top_k(np.asarray(svd.pu), rows, params.k)
        for key in warm:
            profiles[key] = PeerProfile(
                "ratings", [(trainset.to_raw_uid(j), round(s, 4)) for j, s in found[inner[key]]], []
            )
    items = sorted({item for _, item, _ in ratings})
    for key in warm:
        untried = [item for item in items if item not in rated[key]]
        predicted = sorted(
            ((item, round(float(svd.predict(key, item).est), 2)) for item in untried), key=lambda p: -p[1]
        )
        profiles[key].predicted = predicted[:5]

    cold = [key for key in features if key not in profiles]
    if cold:
        progress(85, f"Cold start: {len(cold)} patients matched on clinical features")
        keys = list(features)
        position = {key: n for n, key in enumerate(keys)}
        matrix = np.vstack([features[key] for key in keys]).astype(float)
        found = _closest(_standardise(matrix), [position[key] for key in cold], params.k)
        for key in cold:
            neighbours = [(keys[j], round(s, 4)) for j, s in found[position[key]]]
            profiles[key] = PeerProfile(
                "features", neighbours, _neighbour_predictions(neighbours, rated, rated.get(key, {}))
            )
    timings["neighbours_s"] = round(time.perf_counter() - started, 3)
    metrics["patients"] = len(set(features) | users)
    metrics["patients_with_ratings"] = len(users)
    metrics["warm_patients"] = len(warm)
    metrics["cold_start_patients"] = len(cold)
    metrics["ratings"] = len(ratings)
    metrics["items"] = len(items)
    progress(100, "Done")
    return PeerTraining(params, metrics, profiles, method, svd, knn, timings)


def _closest(vectors: np.ndarray, rows: list[int], k: int, block: int = 1024) -> dict[int, list[tuple[int, float]]]:
    """The k nearest other rows by Euclidean distance, as similarity 1 / (1 + distance / √features)."""
    return _nearest(vectors, rows, vectors[rows], k, block=block, rows_are_reference=True)


def _nearest(
    reference: np.ndarray, rows: list, queries: np.ndarray, k: int, block: int = 1024, rows_are_reference: bool = False
) -> dict:
    """For each query (named by `rows`), the k nearest reference rows. When the queries are
    reference rows themselves (`rows` are their indices), none is its own neighbour."""
    squares = (reference**2).sum(axis=1)
    scale = np.sqrt(reference.shape[1])
    out = {}
    for start in range(0, len(rows), block):
        chunk, vectors = rows[start : start + block], queries[start : start + block]
        distances = np.sqrt(
            np.maximum((vectors**2).sum(axis=1)[:, None] + squares[None, :] - 2 * vectors @ reference.T, 0)
        )
        if rows_are_reference:
            for offset, row in enumerate(chunk):
                distances[offset, row] = np.inf
        top = np.argpartition(distances, min(k, distances.shape[1] - 1), axis=1)[:, :k]
        for offset, row in enumerate(chunk):
            ranked = [
                (int(j), float(1 / (1 + distances[offset, j] / scale)))
                for j in top[offset]
                if np.isfinite(distances[offset, j])
            ]
            out[row] = sorted(ranked, key=lambda p: (-p[1], p[0]))
    return out


def unseen_profiles(
    features: dict,
    rated: dict[object, dict[str, float]],
    unseen: dict,
    own: dict[object, dict[str, float]],
    k: int = PeerParameters.k,
) -> dict:
    """Peers for patients the model never learnt from, found as any patient new to it would be:
    the k training patients nearest on clinical features, and what those rated highly among the
    items she has not tried.

    `features` and `rated` cover the training patients; `unseen` holds the new patients' feature
    vectors and `own` their ratings (only to leave out what she already tried)."""
    if not features or not unseen:
        return {}
    keys = list(features)
    matrix = np.vstack([features[key] for key in keys]).astype(float)
    mean, std = matrix.mean(axis=0), matrix.std(axis=0)
    std = np.where(std == 0, 1, std)
    new_keys = list(unseen)
    queries = (np.vstack([unseen[key] for key in new_keys]).astype(float) - mean) / std
    found = _nearest((matrix - mean) / std, list(range(len(new_keys))), queries, k)
    profiles = {}
    for n, key in enumerate(new_keys):
        neighbours = [(keys[j], round(s, 4)) for j, s in found[n]]
        profiles[key] = PeerProfile("features", neighbours, _neighbour_predictions(neighbours, rated, own.get(key, {})))
    return profiles


def _standardise(matrix: np.ndarray) -> np.ndarray:
    std = matrix.std(axis=0)
    return (matrix - matrix.mean(axis=0)) / np.where(std == 0, 1, std)


def _neighbour_predictions(neighbours, rated, own: dict[str, float]) -> list[tuple[str, float]]:
    """Similarity-weighted mean of neighbours' ratings, for items she has not tried."""
    totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for key, similarity in neighbours:
        for item, rating in rated.get(key, {}).items():
            if item not in own:
                totals[item][0] += similarity * rating
                totals[item][1] += similarity
    predicted = [(item, round(total / weight, 2)) for item, (total, weight) in totals.items() if weight > 0]
    return sorted(predicted, key=lambda p: -p[1])[:5]


# --- clinical features for cold start ---------------------------------------------------------------------

FEATURE_FLAGS = (
    "hypertension",
    "pre_eclampsia_risk",
    "anaemia",
    "gestational_diabetes",
    "diabetes_in_pregnancy",
    "obese",
    "overweight",
    "underweight",
    "tobacco_use",
    "substance_use",
    "previous_c_section",
    "multiple_pregnancy",
)


def clinical_features(
    age: int | None, parity: int | None, gestational_weeks: int | None, bmi_category: str | None, flags: set[str]
) -> np.ndarray:
    """Age, parity, gestational age, BMI category and risk flags as one numeric vector."""
    return np.array(
        [
            float(age or 30),
            float(parity or 0),
            float(gestational_weeks or 0),
            1.0 if gestational_weeks is not None else 0.0,
        ]
        + [1.0 if bmi_category == c else 0.0 for c in ("underweight", "normal weight", "overweight", "obese")]
        + [1.0 if f in flags else 0.0 for f in FEATURE_FLAGS]
    )
