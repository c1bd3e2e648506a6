"""The peer model learns real structure, finds neighbours, and falls back to clinical features."""

import random

import numpy as np

from prompting.pmlm.peers import PeerParameters, clinical_features, latest_ratings, train_peer_model


def structured_ratings(users=240, seed=3):
    """Four latent types, each liking a quarter of the items: a recommender should find them."""
    rng = random.Random(seed)
    ratings = []
    for user in range(users):
        kind = user % 4
        for item in range(16):
            if rng.random() < 0.55:
                score = 3 + (1.4 if item % 4 == kind else -0.6) + rng.gauss(0, 0.5)
                ratings.append((user, f"item-{item}", max(1, min(5, round(score)))))
    return ratings


def features(users):
    return {
        u: clinical_features(25 + u % 15, u % 3, 20, "normal weight", {"anaemia"} if u % 2 else set())
        for u in range(users)
    }


def test_the_peer_model_beats_the_baselines_on_held_out_ratings():
    result = train_peer_model(structured_ratings(), features(240))
    m = result.metrics
    for model in ("svd", "knn_baseline"):
        assert m[model]["rmse"] < m["item_mean"]["rmse"]
        assert m[model]["rmse"] < m["global_mean"]["rmse"]
        assert m[model]["mae"] < m["item_mean"]["mae"]
        assert m[model]["precision_at_5"] > m["global_mean"]["precision_at_5"]
    assert result.neighbour_method == "knn-matrix"


def test_neighbours_share_her_latent_type():
    result = train_peer_model(structured_ratings(), features(240))
    same = [n % 4 == 0 for n, _ in result.profiles[0].neighbours]
    assert result.profiles[0].basis == "ratings"
    assert np.mean(same) > 0.7
    assert all(item for item, _ in result.profiles[0].predicted)


def test_above_the_knn_limit_neighbours_come_from_svd_factors():
    result = train_peer_model(structured_ratings(), features(240), PeerParameters(knn_limit=100))
    assert result.neighbour_method == "svd-factors"
    assert result.knn is None
    assert "knn_baseline" not in result.metrics
    assert len(result.profiles[0].neighbours) == 20


def test_cold_start_patients_get_neighbours_by_clinical_features():
    ratings = structured_ratings() + [(500, "item-1", 5)]
    feats = features(240) | {
        500: clinical_features(30, 1, 20, "normal weight", set()),
        501: clinical_features(30, 1, 20, "obese", {"anaemia"}),
    }
    result = train_peer_model(ratings, feats)
    assert result.profiles[500].basis == "features"
    assert result.profiles[501].basis == "features"
    assert result.profiles[501].neighbours
    assert result.profiles[501].predicted
    assert result.metrics["cold_start_patients"] == 2


def test_only_her_latest_rating_of_an_item_counts():
    assert latest_ratings([(1, "a", 5, 100), (1, "a", 2, 3), (1, "b", 4, 7)]) == [(1, "a", 2), (1, "b", 4)]
