import json as jsonlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from patients.models import JobStatus, Organisation
from prompting.refinement import (
    RefinementError,
    deployment_text,
    difference_text,
    refinement_run_as_json,
    refinement_run_create,
    refinement_run_execute,
    refinement_run_promote,
    set_aside_reasons,
)


class Command(BaseCommand):
    help = (
        "One reinforcement-learning run of the edit policy (TRL GRPO over sentence-level prompt edits) on an "
        "organisation's encounters with physician recommendations; validates initial vs refined prompts on held-out "
        "patients with patient-clustered bootstrap intervals."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", default=settings.PMLM_DEMO_ORGANISATION, help="Organisation slug.")
        parser.add_argument("--steps", type=int, help="GRPO steps (default: 40 on a CPU, 300 on a GPU).")
        parser.add_argument(
            "--max-examples", type=int, help="Training encounters of learning patients (default: CPU 16 / GPU 400)."
        )
        parser.add_argument("--max-validation", type=int, help="Held-out encounters validated on (default: 60 / 400).")
        parser.add_argument(
            "--num-generations", type=int, help="Edit codes per example that GRPO compares (default: 8)."
        )
        parser.add_argument("--endpoint", default="", help="The target LLM endpoint (default: the default endpoint).")
        parser.add_argument("--device", choices=["cpu", "cuda"], help="Default: cuda when available.")
        parser.add_argument("--promote", action="store_true", help="Promote the run when it finishes.")
        parser.add_argument("--json", action="store_true", help="Print run_id, steps, rewards and checkpoint as JSON.")

    def handle(
        self,
        *args,
        org,
        steps,
        max_examples,
        max_validation,
        num_generations,
        endpoint,
        device,
        promote,
        json: bool,
        **options,
    ):
        organisation = Organisation.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation '{org}'.")
        try:
            run = refinement_run_create(
                organisation=organisation,
                steps=steps,
                max_examples=max_examples,
                max_validation=max_validation,
                num_generations=num_generations,
                endpoint_name=endpoint,
                device=device or "",
            )
        except RefinementError as exc:
            raise CommandError(str(exc)) from None
        progress = lambda percent, message: self.stderr.write(f"[{percent:3d}%] {message}")  # noqa: E731
        run = refinement_run_execute(run_id=run.pk, on_progress=progress)
        if run.status != JobStatus.DONE:
            raise CommandError(f"Refinement run {run.version} {run.status}: {run.error or run.message}")
        if promote:
            run = refinement_run_promote(run=run)
        report = refinement_run_as_json(run)
        if json:
            self.stdout.write(
                jsonlib.dumps(
                    {
                        k: report[k]
                        for k in (
                            "run_id",
                            "steps",
                            "reward_initial",
                            "reward_refined",
                            "minutes",
                            "stage_minutes",
                            "target_calls",
                            "validation",
                            "best_fixed_edit",
                            "set_aside",
                            "by_sources",
                            "deployed",
                            "policy_train_mean_reward",
                            "policy_train_key_item_precision",
                            "policy_train_unsupported_claims",
                            "learned",
                            "checkpoint",
                            "accepted_share",
                            "seconds_per_step",
                            "train_examples",
                            "validation_examples",
                            "promoted",
                        )
                    },
                    indent=2,
                )
            )
            return
        validation = report["validation"]
        self.stdout.write(
            f"Refinement run {run.version}: {run.step} steps in {report['minutes']} min, "
            f"{run.target_calls} distinct target-LLM answers"
        )
        self.stdout.write(
            f"Held out: {validation['n']} answers of {validation['patients']} patients; reward initial "
            f"{_figure(run.reward_initial)}, refined {_figure(run.reward_refined)}; refined − initial "
            f"{difference_text(validation['difference'], validation['ci'])}"
        )
        best = report["best_fixed_edit"]
        self.stdout.write(f"Best fixed edit on the training patients: {best['code']} ({best['label']})")
        if report["set_aside"]:
            aside = report["set_aside"]
            self.stdout.write(
                f"Set aside: {aside['code']} ({aside['label']}) scored best, {_figure(aside['mean_reward'])}, but "
                f"{set_aside_reasons(aside, best.get('initial_key_item_precision'))}"
            )
        for setting, block in (report["by_sources"] or {}).items():
            fixed = block["best_fixed"]
            self.stdout.write(
                f"Guidance sources {setting}: best fixed edit {fixed['code']} ({_figure(fixed['mean_reward'])} against "
                f"{_figure(fixed['initial_mean_reward'])}, key-item precision "
                f"{_figure(fixed['key_item_precision'])} against {_figure(fixed['initial_key_item_precision'])}, "
                f"unsupported claims about her {_figure(fixed.get('unsupported_claims'))} against "
                f"{_figure(fixed.get('initial_unsupported_claims'))} per answer)"
            )
            if fixed.get("set_aside"):
                aside = fixed["set_aside"]
                self.stdout.write(
                    f"  set aside there: {aside['code']} ({aside['label']}), "
                    f"{set_aside_reasons(aside, fixed.get('initial_key_item_precision'))}"
                )
        self.stdout.write(deployment_text(run.report or {}).capitalize())
        self.stdout.write(f"Checkpoint: {report['checkpoint']}" + (" (promoted)" if run.promoted else ""))


def _figure(value) -> str:
    return "—" if value is None else f"{value:.3f}"
