"""A refinement run's edits per guidance-sources setting, on its own training examples: each edit's mean reward
and key-item precision, read from the answer cache the run filled (a missing answer is asked of the target LLM).

    PMLM_VAR_DIR=var/rl .venv/bin/python bench/refinement_by_sources.py [--run ID]
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
os.environ.setdefault("DJANGO_DEBUG", "1")

import django  # noqa: E402

django.setup()

from prompting.models import RefinementRun  # noqa: E402
from prompting.pmlm.edits import MENU  # noqa: E402
from prompting.pmlm.training import by_sources, key_item_precision  # noqa: E402
from prompting.refinement import _config, refinement_examples, run_scorer  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=int, help="the run's id (default: the latest finished run)")
    args = parser.parse_args()
    runs = RefinementRun.objects.filter(status="done").order_by("-pk")
    run = runs.get(pk=args.run) if args.run else runs.first()
    train, _ = refinement_examples(organisation=run.organisation, config=_config(run))
    _, scorer = run_scorer(run)
    print(f"Refinement run {run.version}: {len(train)} training examples")
    for setting, subset in by_sources(train).items():  # the settings as a run deploys per setting
        print(f"guidance sources {setting} ({len(subset)} examples)")
        for edit in MENU:
            outcomes = [scorer.used(e, edit.code) for e in subset]
            reward = statistics.fmean(o.reward for o in outcomes)
            print(f"  {edit.code} reward {reward:.3f}  key-item precision {key_item_precision(outcomes)}  {edit.label}")


if __name__ == "__main__":
    main()
