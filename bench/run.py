"""Run every benchmark and print one table: each figure beside its same-run baseline.

.venv/bin/python bench/run.py [--sizes 1000 10000 50000] [--samples 200] [--fresh] [--skip-llm] [--skip-load]
    [--skip-rl] [--skip-cds]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def part(name: str, size: int, samples: int) -> dict:
    env = dict(
        os.environ,
        PMLM_VAR_DIR=str(ROOT / "var" / "bench" / str(size)),
        DJANGO_DEBUG="1",
        HF_HUB_OFFLINE="1",
        DATABASE_URL=os.environ.get("BENCH_DATABASE_URL", ""),
    )
    command = [
        sys.executable,
        str(ROOT / "bench" / "prompt_peers.py"),
        "--part",
        name,
        "--size",
        str(size),
        "--samples",
        str(samples),
    ]
    if name == "llm":
        command = [sys.executable, str(ROOT / "bench" / "llm.py")]
    if name == "load":
        command = [sys.executable, str(ROOT / "bench" / "load.py")]
    if name == "rl":
        command = [sys.executable, str(ROOT / "bench" / "rl.py")]
        env["PMLM_VAR_DIR"] = str(ROOT / "var" / "bench" / "rl")
    if name == "cds":
        command = [sys.executable, str(ROOT / "bench" / "cds_hooks.py")]
        env["PMLM_VAR_DIR"] = str(ROOT / "var" / "bench" / "cds")
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"benchmark part {name} ({size}) failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--fresh", action="store_true", help="Rebuild the benchmark cohorts.")
    parser.add_argument("--skip-llm", action="store_true")
    parser.add_argument("--skip-load", action="store_true")
    parser.add_argument("--skip-rl", action="store_true")
    parser.add_argument("--skip-cds", action="store_true")
    args = parser.parse_args()
    rows = []
    for size in args.sizes:
        if args.fresh:
            shutil.rmtree(ROOT / "var" / "bench" / str(size), ignore_errors=True)
        print(f"… {size} patients: seeding", file=sys.stderr, flush=True)
        seeded = part("seed", size, args.samples)
        print(f"… {size} patients: training peers", file=sys.stderr, flush=True)
        trained = part("train", size, args.samples)
        print(f"… {size} patients: building prompts", file=sys.stderr, flush=True)
        built = part("prompts", size, args.samples)
        rows.append((size, seeded, trained, built))
    llm = None
    if not args.skip_llm:
        print(f"… local generation on the {args.sizes[0]}-patient cohort", file=sys.stderr, flush=True)
        llm = part("llm", args.sizes[0], args.samples)
    load = None
    if not args.skip_load:
        print("… load test: API and pages under gunicorn (wrk, loopback)", file=sys.stderr, flush=True)
        load = part("load", args.sizes[0], args.samples)
    rl = None
    if not args.skip_rl:
        print(
            "… RL refinement: two GRPO steps of the SmolLM2 policy on a 40-patient demo cohort",
            file=sys.stderr,
            flush=True,
        )
        rl = part("rl", args.sizes[0], args.samples)
    cds = None
    if not args.skip_cds:
        print("… CDS Hooks patient-view beside the API's one-patient read (40 patients)", file=sys.stderr, flush=True)
        cds = part("cds", args.sizes[0], args.samples)

    print(f"\n{'benchmark':<34}{'patients':>9}{'figure':>14}{'baseline':>14}{'ratio':>8}  baseline is")
    for size, seeded, trained, built in rows:
        print(
            f"{'prompt build p50 (ms)':<34}{size:>9}{built['build_p50_ms']:>14}{built['history_p50_ms']:>14}"
            f"{built['build_p50_ms'] / built['history_p50_ms']:>8.1f}  reading her history only"
        )
        print(
            f"{'prompt build p95 (ms)':<34}{size:>9}{built['build_p95_ms']:>14}{built['history_p95_ms']:>14}"
            f"{built['build_p95_ms'] / built['history_p95_ms']:>8.1f}  reading her history only (target p95 ≤ 50 ms)"
        )
        print(
            f"{'peer training (s)':<34}{size:>9}{trained['train_s']:>14}{trained['item_mean_baseline_s']:>14}"
            f"{trained['train_s'] / max(trained['item_mean_baseline_s'], 1e-6):>8.0f}  item-mean baseline fit"
        )
        print(
            f"{'peer training peak RSS (MB)':<34}{size:>9}{trained['peak_rss_mb']:>14}{trained['rss_before_mb']:>14}"
            f"{trained['peak_rss_mb'] / trained['rss_before_mb']:>8.1f}  RSS before training (limit 8192 MB: "
            f"{'within' if trained['peak_rss_mb'] <= 8192 else 'OVER'})"
        )
        print(
            f"{'peer model held-out RMSE':<34}{size:>9}{trained['svd_rmse']:>14}{trained['global_mean_rmse']:>14}"
            f"{trained['svd_rmse'] / trained['global_mean_rmse']:>8.2f}  global-mean baseline "
            f"({trained['neighbour_method']}, {trained['ratings']} ratings)"
        )
    if llm:
        print(
            f"{'local generation tokens/s':<34}{'':>9}{llm['our_tokens_per_s']:>14}{llm['raw_tokens_per_s']:>14}"
            f"{llm['our_tokens_per_s'] / llm['raw_tokens_per_s']:>8.2f}  raw llama.cpp, same GGUF and prompt "
            "(aim ≥ 0.9)"
        )
        print(
            f"{'local time to first token (ms)':<34}{'':>9}{llm['our_ttft_ms']:>14}{llm['raw_ttft_ms']:>14}"
            f"{llm['our_ttft_ms'] / llm['raw_ttft_ms']:>8.2f}  raw llama.cpp ({llm['prompt_tokens']}-token prompt)"
        )
        reuse = llm["prefix_reuse"]
        print(
            f"{'first words, prefix prefilled (ms)':<34}{'':>9}{reuse['warm_ttft_ms']:>14}{reuse['cold_ttft_ms']:>14}"
            f"{reuse['cold_over_warm']:>8.2f}× faster than the same {reuse['prompt_tokens_median']:.0f}-token "
            f"prompt read cold (target ≤ 2000 ms and ≥ 3×); same text in {reuse['identical_text']}"
        )
        print(
            f"{'first words, sources read typing':<34}{'':>9}{reuse['typed_ttft_ms']:>14}{reuse['cold_ttft_ms']:>14}"
            f"{reuse['cold_over_typed']:>8.2f}× faster than cold: her start and her question's sources read while "
            f"she typed (target ≤ 2000 ms and ≥ 3×); same text in {reuse['identical_text']}"
        )
        parts = llm["outside_parts_ms"]
        print(
            f"{'consultation time outside the LLM':<34}{'':>9}{llm['share_outside_llm']:>14.1%}"
            f"{llm['consultation_total_ms']:>14}"
            f"{'':>8}  of a median {llm['consultation_total_ms']} ms consultation (retrieval {parts['retrieval_ms']}, "
            f"prompt {parts['prompt_ms']}, safety {parts['safety_ms']} ms)"
        )
    if load:
        base = load["load"][0]
        for row in load["load"][1:]:
            print(
                f"{row['target'] + ' req/s':<34}{'':>9}{row['rps']:>14}{base['rps']:>14}"
                f"{row['ratio']:>8.2f}  "
                f"sign-in page just before, same server ({load['workers']} gunicorn workers, "
                f"{load['connections']} connections)"
            )
            print(
                f"{row['target'] + ' p95 (ms)':<34}{'':>9}{row['p95_ms']:>14}{base['p95_ms']:>14}"
                f"{row['p95_ms'] / base['p95_ms']:>8.1f}  sign-in page p95 ({row['errors']} errors)"
            )
    if rl:
        print(
            f"{'RL refinement step (s)':<34}{'':>9}{rl['step_s_median']:>14}{rl['sampling_baseline_s']:>14}"
            f"{rl['step_s_median'] / rl['sampling_baseline_s']:>8.1f}  the policy sampling one group ({rl['group']} × "
            f"{rl['completion_tokens']} tokens) without scoring or update; median of {rl['steps']} steps, "
            f"{rl['scoring_s_median']} s of each scoring"
        )
    if cds:
        print(
            f"{'CDS Hooks patient-view p95 (ms)':<34}{cds['patients']:>9}{cds['hook_p95_ms']:>14}"
            f"{cds['api_one_patient_p95_ms']:>14}{cds['hook_p95_ms'] / cds['api_one_patient_p95_ms']:>8.1f}  "
            f"API one-patient read p95, same run (target hook p95 ≤ 300 ms; p50 {cds['hook_p50_ms']} ms)"
        )
    print(
        json.dumps(
            {
                "results": [{"size": s, **a, **b, **c} for s, a, b, c in rows],
                "llm": llm,
                "load": load,
                "rl": rl,
                "cds": cds,
            }
        ),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
