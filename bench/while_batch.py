"""A consultation while a batch job runs: time to first words and total time of guidance, idle against the same
guidance while an evaluation answers on the batch lane's model in another process (as the two lanes' workers do).

The interactive lane's worker answers guidance in its own process; here that is this process, with the endpoint's
own settings. The batch job is `manage.py evaluate` in a subprocess, asked for answers no cache holds. Each
guidance is asked cold (nothing of her prompt read before), alternating idle and loaded. Target (issue 17): at
most 1.5× idle.

    PMLM_VAR_DIR=var/rl .venv/bin/python bench/while_batch.py [--runs 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from bench.llm import forget, timed_stream  # noqa: E402
from patients import models as pm  # noqa: E402
from prompting.consultation import guidance_messages, question_prompt  # noqa: E402
from prompting.endpoints import endpoint_default  # noqa: E402
from prompting.llm import build_backend  # noqa: E402
from prompting.prompts import count_tokens  # noqa: E402

BATCH = [
    sys.executable,
    "manage.py",
    "evaluate",
    "--variants",
    "general",
    "self",
    "peer",
    "--retrieval",
    "off",
    "--limit-patients",
    "30",
    "--max-tokens",
    "200",
]  # an answer length no earlier run cached


BATCH_NICE = 19  # scripts/demo.sh runs the batch lane's worker at this niceness


def timed(backend, llama, endpoint, messages) -> tuple[float, float]:
    """(first words ms, total ms) of one guidance answer, nothing of it read before."""
    forget(llama)
    started = time.perf_counter()
    ttft, _, _ = timed_stream(
        lambda on_token: backend.generate(
            messages, max_tokens=endpoint.max_tokens, temperature=endpoint.temperature, on_token=on_token
        )
    )
    return ttft, (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batch-nice", type=int, default=BATCH_NICE, help="the batch job's CPU niceness (demo.sh's)")
    args = parser.parse_args()
    endpoint = endpoint_default()
    backend = build_backend(endpoint.kind, endpoint.settings, count_tokens=count_tokens)
    llama, _ = backend.model()
    patients = list(
        pm.Patient.objects.filter(organisation__slug="demo-clinic", pregnancy_start__isnull=False)[: args.runs]
    )
    prompts = [
        question_prompt(patient=p, question="What should we plan for her next visit?", at=date.today())[0]
        for p in patients
    ]
    messages = [guidance_messages(prompt.text) for prompt in prompts]
    timed(backend, llama, endpoint, messages[0])  # warm-up
    batch = subprocess.Popen(
        ["nice", "-n", str(args.batch_nice), *BATCH],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    idle, loaded = [], []
    try:
        time.sleep(20)  # the batch job has loaded its model and is answering
        for message in messages:
            loaded.append(timed(backend, llama, endpoint, message))
        batch_ran = batch.poll() is None  # still answering: the loaded figures were measured under load
        batch.terminate()
        batch.wait(timeout=30)
        for message in messages:
            idle.append(timed(backend, llama, endpoint, message))
    finally:
        if batch.poll() is None:
            batch.kill()

    def median(rows, i):
        return round(statistics.median(r[i] for r in rows), 1)

    result = {
        "batch_nice": args.batch_nice,
        "batch_ran_throughout": batch_ran,
        "prompt_tokens_median": statistics.median(p.token_count for p in prompts),
        "idle_first_words_ms": median(idle, 0),
        "loaded_first_words_ms": median(loaded, 0),
        "idle_total_ms": median(idle, 1),
        "loaded_total_ms": median(loaded, 1),
    }
    result["first_words_ratio"] = round(result["loaded_first_words_ms"] / result["idle_first_words_ms"], 2)
    result["total_ratio"] = round(result["loaded_total_ms"] / result["idle_total_ms"], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
