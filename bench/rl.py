"""Time per step of prompt refinement by RL (TRL GRPO with the real SmolLM2 policy), beside the
policy merely sampling one group of candidates from the same prompt in the same run.

Runs on a small demo cohort under var/bench/rl (Synthea patients with physician recommendations),
target LLM = the local GGUF. Prints one JSON line.

    .venv/bin/python bench/rl.py [--steps 2] [--patients 40]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PMLM_VAR_DIR", str(ROOT / "var" / "bench" / "rl"))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from patients import models as pm  # noqa: E402
from prompting.pmlm.refine import policy_messages  # noqa: E402
from prompting.refinement import refinement_run_create, refinement_run_execute, refiner_base_checkpoint, training_examples  # noqa: E402


def seed(patients: int) -> pm.Organisation:
    call_command("migrate", verbosity=0)
    organisation = pm.Organisation.objects.filter(slug="demo-clinic").first()
    if organisation is None or not pm.PhysicianRecommendation.objects.filter(patient__organisation=organisation).exists():
        call_command("seed_demo", "--limit", str(patients), "--password", "bench-password-1", verbosity=0, stdout=open(os.devnull, "w"))
        organisation = pm.Organisation.objects.get(slug="demo-clinic")
    return organisation


def sampling_baseline(checkpoint: Path, prompt: str, *, group: int, tokens: int, runs: int = 2) -> float:
    """Seconds for the policy to sample one group of `group` candidates of `tokens` tokens: the part
    of a GRPO step that is plain generation, without scoring or the update."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(7)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    inputs = tokenizer.apply_chat_template(policy_messages(prompt), add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(**inputs, do_sample=True, temperature=1.0, max_new_tokens=tokens, min_new_tokens=tokens,
                           num_return_sequences=group, pad_token_id=tokenizer.eos_token_id)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--patients", type=int, default=40)
    args = parser.parse_args()
    organisation = seed(args.patients)
    started = time.perf_counter()
    base = refiner_base_checkpoint()  # converted from the GGUF once, then kept under var/bench/rl
    conversion_s = time.perf_counter() - started
    run = refinement_run_create(organisation=organisation, steps=args.steps, max_examples=8, num_generations=4, device="cpu")
    run = refinement_run_execute(run_id=run.pk)
    if run.status != pm.JobStatus.DONE:
        raise SystemExit(f"the refinement run {run.status}: {run.error}")
    example = training_examples(organisation=organisation, max_examples=1, seed=7)[0]
    baseline = sampling_baseline(base, example.initial_text, group=run.config["num_generations"],
                                 tokens=run.config["max_completion_tokens"])
    steps = [point["seconds"] for point in run.curve]
    scoring = [point.get("scoring_seconds", 0) for point in run.curve]
    print(json.dumps({
        "steps": len(steps), "step_s_median": round(statistics.median(steps), 1), "scoring_s_median": round(statistics.median(scoring), 1),
        "sampling_baseline_s": round(baseline, 1), "group": run.config["num_generations"],
        "completion_tokens": run.config["max_completion_tokens"], "conversion_s": round(conversion_s, 1),
        "train_examples": run.train_examples, "validation_examples": run.validation_examples,
    }))


if __name__ == "__main__":
    main()
