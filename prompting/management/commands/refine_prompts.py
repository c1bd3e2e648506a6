import json as jsonlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from patients.models import JobStatus, Organisation
from prompting.refinement import (
    RefinementError, refinement_run_as_json, refinement_run_create, refinement_run_execute, refinement_run_promote,
)


class Command(BaseCommand):
    help = ("One reinforcement-learning run of the refiner policy (TRL GRPO) on an organisation's encounters with "
            "physician recommendations; validates initial vs refined prompts on held-out patients.")

    def add_arguments(self, parser):
        parser.add_argument("--org", default=settings.PMLM_DEMO_ORGANISATION, help="Organisation slug.")
        parser.add_argument("--steps", type=int, help="GRPO steps (default: 4 on a CPU, 60 on a GPU).")
        parser.add_argument("--max-examples", type=int, help="Training and validation examples in all (default: 24 / 400).")
        parser.add_argument("--num-generations", type=int, help="Candidates per example that GRPO compares (default: 4 / 8).")
        parser.add_argument("--endpoint", default="", help="The target LLM endpoint (default: the default endpoint).")
        parser.add_argument("--device", choices=["cpu", "cuda"], help="Default: cuda when available.")
        parser.add_argument("--promote", action="store_true", help="Promote the run when it finishes.")
        parser.add_argument("--json", action="store_true", help="Print run_id, steps, rewards and checkpoint as JSON.")

    def handle(self, *args, org, steps, max_examples, num_generations, endpoint, device, promote, json: bool, **options):
        organisation = Organisation.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation '{org}'.")
        try:
            run = refinement_run_create(organisation=organisation, steps=steps, max_examples=max_examples,
                                        num_generations=num_generations, endpoint_name=endpoint, device=device or "")
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
            self.stdout.write(jsonlib.dumps({k: report[k] for k in (
                "run_id", "steps", "reward_initial", "reward_refined", "checkpoint", "accepted_share", "seconds_per_step",
                "train_examples", "validation_examples", "promoted")}, indent=2))
            return
        self.stdout.write(f"Refinement run {run.version}: {run.step} steps, {run.seconds_per_step} s per step (median)")
        self.stdout.write(f"Validation on {run.validation_examples} held-out examples: initial {run.reward_initial:.3f}, "
                          f"refined {run.reward_refined:.3f}, refined prompts accepted {run.accepted_share:.0%}")
        self.stdout.write(f"Checkpoint: {report['checkpoint']}" + (" (promoted)" if run.promoted else ""))
