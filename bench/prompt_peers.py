"""One benchmark part in its own process: `--part seed|train|prompts` for a cohort of N patients.

Run through bench/run.py, which sets PMLM_VAR_DIR per cohort and prints the table.
"""

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from patients import models as pm  # noqa: E402
from prompting.peer_models import peer_model_create, peer_model_train  # noqa: E402
from prompting.pmlm import peers as peer_method  # noqa: E402
from prompting.prompts import prompt_build  # noqa: E402
from prompting.selectors import patient_history  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def seed(size: int):
    call_command("migrate", verbosity=0)
    organisation = pm.Organisation.objects.filter(slug="demo-clinic").first()
    if organisation and organisation.patients.count() == size:
        return {"seeded": "reused"}
    started = time.perf_counter()
    call_command(
        "seed_demo",
        "--limit",
        "0",
        "--synthetic-patients",
        str(size),
        "--password",
        "bench-password-1",
        verbosity=0,
        stdout=open(os.devnull, "w"),
    )
    return {"seed_s": round(time.perf_counter() - started, 1)}


def train(size: int):
    organisation = pm.Organisation.objects.get(slug="demo-clinic")
    today = timezone.now().date()
    rows = pm.CareRating.objects.filter(patient__organisation=organisation).values_list(
        "patient_id", "care_item__slug", "rating", "rated_on"
    )
    ratings = peer_method.latest_ratings([(p, s, float(r), (today - d).days) for p, s, r, d in rows])
    started = time.perf_counter()
    by_item = {}
    for _, item, rating in ratings:
        by_item.setdefault(item, []).append(rating)
    _item_means = {item: statistics.mean(values) for item, values in by_item.items()}  # the baseline "fit"
    baseline_s = time.perf_counter() - started
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    peer_model = peer_model_train(peer_model_id=peer_model_create(organisation=organisation).pk)
    train_s = time.perf_counter() - started
    return {
        "train_s": round(train_s, 2),
        "item_mean_baseline_s": round(baseline_s, 4),
        "rss_before_mb": round(rss_before),
        "peak_rss_mb": round(peak_rss_mb()),
        "neighbour_method": peer_model.neighbour_method,
        "ratings": peer_model.metrics["ratings"],
        "svd_rmse": peer_model.metrics["svd"]["rmse"],
        "global_mean_rmse": peer_model.metrics["global_mean"]["rmse"],
    }


def prompts(size: int, samples: int):
    patients = list(pm.Patient.objects.filter(organisation__slug="demo-clinic"))
    rng = random.Random(11)
    chosen = [rng.choice(patients) for _ in range(samples)]
    today = timezone.now().date()
    prompt_build(patient=chosen[0], question="warm-up")  # loads the tokenizer once, as a running server has
    history_ms, build_ms = [], []
    for n, patient in enumerate(chosen):
        started = time.perf_counter()
        patient_history(patient, today)
        history_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        prompt_build(patient=patient, question=f"What should we plan for her next visit? ({n})")
        build_ms.append((time.perf_counter() - started) * 1000)

    def pct(values, q):
        return round(statistics.quantiles(values, n=100)[q - 1], 1)

    return {
        "samples": samples,
        "build_p50_ms": pct(build_ms, 50),
        "build_p95_ms": pct(build_ms, 95),
        "history_p50_ms": pct(history_ms, 50),
        "history_p95_ms": pct(history_ms, 95),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["seed", "train", "prompts"], required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    result = {
        "seed": lambda: seed(args.size),
        "train": lambda: train(args.size),
        "prompts": lambda: prompts(args.size, args.samples),
    }[args.part]()
    print(json.dumps({"part": args.part, "size": args.size, **result}))
