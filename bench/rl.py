"""The RL refinement policy's costs: the latency of one choice of the edit policy (`EditPolicy.choose`
on a patient's situation, the call every guidance request with a promoted policy makes) and the
time of a GRPO step of the real SmolLM2 policy over edit codes, beside the policy merely sampling
one group of codes from the same situation.

The step reads its rewards from a synthetic reward table, so the target LLM is never asked: the
figure is the policy's own cost (sampling, the update), not the target LLM's answers. Runs on a
small demo cohort under var/bench/rl (Synthea patients with physician recommendations). Prints
one JSON line.

    .venv/bin/python bench/rl.py [--steps 1] [--patients 40]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
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
from prompting.pmlm.edits import MENU  # noqa: E402
from prompting.pmlm.training import EditPolicy, default_config, policy_prompt, train_policy  # noqa: E402
from prompting.refinement import refinement_examples, refiner_base_checkpoint  # noqa: E402


def seed(patients: int) -> pm.Organisation:
    call_command("migrate", verbosity=0)
    organisation = pm.Organisation.objects.filter(slug="demo-clinic").first()
    if (
        organisation is None
        or not pm.PhysicianRecommendation.objects.filter(patient__organisation=organisation).exists()
    ):
        call_command(
            "seed_demo",
            "--limit",
            str(patients),
            "--password",
            "bench-password-1",
            verbosity=0,
            stdout=open(os.devnull, "w"),
        )
        organisation = pm.Organisation.objects.get(slug="demo-clinic")
    return organisation


def sampling_baseline(checkpoint: Path, situation: str, *, group: int, tokens: int, runs: int = 2) -> float:
    """Seconds for the policy to sample one group of `group` edit codes of `tokens` tokens: the part
    of a GRPO step that is plain generation, without the update."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(7)
    tokenizer = AutoTokenizer.from_pretrained(str(checkpoint))
    model = AutoModelForCausalLM.from_pretrained(str(checkpoint), dtype=torch.float32)
    inputs = tokenizer(policy_prompt(tokenizer, situation), return_tensors="pt", add_special_tokens=False)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        with torch.no_grad():
            model.generate(
                **inputs,
                do_sample=True,
                temperature=1.0,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                num_return_sequences=group,
                pad_token_id=tokenizer.eos_token_id,
            )
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def choice_latency_ms(checkpoint: Path, situations: list[str], runs: int = 3) -> float:
    """Median milliseconds of one `EditPolicy.choose` (every edit of the menu scored in one batch)."""
    policy = EditPolicy(checkpoint)
    policy.choose(situations[0])  # warm-up
    seconds = []
    for _ in range(runs):
        for situation in situations:
            started = time.perf_counter()
            policy.choose(situation)
            seconds.append(time.perf_counter() - started)
    return statistics.median(seconds) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--patients", type=int, default=40)
    args = parser.parse_args()
    organisation = seed(args.patients)
    started = time.perf_counter()
    base = refiner_base_checkpoint()  # converted from the GGUF once, then kept under var/bench/rl
    conversion_s = time.perf_counter() - started
    config = default_config("cpu", steps=args.steps, max_examples=8, max_validation=2)
    train, _ = refinement_examples(organisation=organisation, config=config)
    codes = [edit.code for edit in MENU]
    # A synthetic reward table (no target LLM): one edit is best for each example, the rest lower.
    table = {
        e.key: {code: (0.6 if n % len(codes) == i % len(codes) else 0.3) for n, code in enumerate(codes)}
        for i, e in enumerate(train)
    }
    choose_ms = choice_latency_ms(base, [e.situation for e in train[:5]])
    with tempfile.TemporaryDirectory() as scratch:
        steps = train_policy(
            base_checkpoint=base,
            output_dir=Path(scratch) / "policy",
            train=train,
            table=table,
            config=config,
            invalid_reward=lambda example: -1.0,
        )
    baseline = sampling_baseline(
        base, train[0].situation, group=config.num_generations, tokens=config.max_completion_tokens
    )
    seconds = [s.seconds for s in steps]
    print(
        json.dumps(
            {
                "steps": len(steps),
                "step_s_median": round(statistics.median(seconds), 2),
                "scoring_s_median": 0.0,
                "sampling_baseline_s": round(baseline, 2),
                "group": config.num_generations,
                "completion_tokens": config.max_completion_tokens,
                "choose_ms_median": round(choose_ms, 1),
                "situation_chars_max": max(len(e.situation) for e in train),
                "conversion_s": round(conversion_s, 1),
                "train_examples": len(train),
            }
        )
    )


if __name__ == "__main__":
    main()
