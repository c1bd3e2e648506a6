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

from prompting.encounters import target_answerer  # noqa: E402
from prompting.models import RefinementRun  # noqa: E402
from prompting.pmlm.edits import MENU  # noqa: E402
from prompting.pmlm.retrieval import default_embedder  # noqa: E402
from prompting.pmlm.rewards import RewardWeights  # noqa: E402
from prompting.pmlm.training import Scorer, key_item_precision  # noqa: E402
from prompting.prompts import count_tokens  # noqa: E402
from prompting.refinement import _config, refinement_examples  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--run", type=int, help="the run's id (default: the latest finished run)")
    args = parser.parse_args()
    runs = RefinementRun.objects.filter(status="done").order_by("-pk")
    run = runs.get(pk=args.run) if args.run else runs.first()
    train, _ = refinement_examples(organisation=run.organisation, config=_config(run))
    answerer = target_answerer(run.config["target_endpoint"], run.config.get("target_max_tokens"))
    scorer = Scorer(
        answer=answerer,
        embed=default_embedder().embed,
        count_tokens=count_tokens,
        weights=RewardWeights.from_dict(run.config.get("weights")),
    )
    print(f"Refinement run {run.version}: {len(train)} training examples")
    for rag in (True, False):
        subset = [e for e in train if e.rag == rag]
        print(f"guidance sources {'on' if rag else 'off'} ({len(subset)} examples)")
        for edit in MENU:
            outcomes = [scorer.used(e, edit.code) for e in subset]
            reward = statistics.fmean(o.reward for o in outcomes)
            print(f"  {edit.code} reward {reward:.3f}  key-item precision {key_item_precision(outcomes)}  {edit.label}")


if __name__ == "__main__":
    main()
