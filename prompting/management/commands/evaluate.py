import json as jsonlib

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from patients.models import JobStatus, Organisation
from prompting.evaluation_runs import (
    EvaluationError,
    evaluation_run_as_json,
    evaluation_run_create,
    evaluation_run_execute,
    evaluation_run_queue,
)
from prompting.pmlm.evaluation import METRICS, VARIANT_LABELS, VARIANTS


class Command(BaseCommand):
    help = (
        "Compare the six prompt variants (general, self, peer, pmlm, pmlm_best_edit, pmlm_rl), with and without "
        "guidance sources, on patients held out from peer training and RL: guidance scored against the "
        "physicians' recommendations, with bootstrap 95% confidence intervals."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", default=settings.PMLM_DEMO_ORGANISATION, help="Organisation slug.")
        parser.add_argument("--limit-patients", type=int, help="Evaluate at most N held-out patients (default: all).")
        parser.add_argument(
            "--endpoint",
            action="append",
            dest="endpoints",
            metavar="NAME",
            help="An LLM endpoint to evaluate; repeat for several (default: every active endpoint).",
        )
        parser.add_argument(
            "--retrieval", choices=["both", "on", "off"], default="both", help="Guidance sources on, off or both."
        )
        parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
        parser.add_argument(
            "--judge", default="", metavar="ENDPOINT", help="Also score with this LLM as a rubric judge."
        )
        parser.add_argument("--seed", type=int, default=7, help="The hold-out split's seed (the RL runs' seed is 7).")
        parser.add_argument("--max-tokens", type=int, help="Answer length (default: each endpoint's max_tokens).")
        parser.add_argument(
            "--resamples", type=int, default=1000, help="Bootstrap resamples for the confidence intervals."
        )
        parser.add_argument("--queue", action="store_true", help="Run on a Celery worker and print the run id.")
        parser.add_argument(
            "--json", action="store_true", help='Print {"rows": [{variant, rag, endpoint, metric…, ci}…]} and more.'
        )

    def handle(
        self,
        *args,
        org,
        limit_patients,
        endpoints,
        retrieval,
        variants,
        judge,
        seed,
        max_tokens,
        resamples,
        queue,
        json: bool,
        **options,
    ):
        organisation = Organisation.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation '{org}'.")
        rags = {"both": (True, False), "on": (True,), "off": (False,)}[retrieval]
        try:
            run = evaluation_run_create(
                organisation=organisation,
                endpoint_names=endpoints,
                retrieval=rags,
                variants=tuple(variants),
                limit_patients=limit_patients,
                judge_endpoint_name=judge,
                seed=seed,
                max_tokens=max_tokens,
                resamples=resamples,
            )
        except EvaluationError as exc:
            raise CommandError(str(exc)) from None
        if queue:
            evaluation_run_queue(run=run)
            self.stdout.write(
                jsonlib.dumps({"run_id": run.pk, "status": run.status})
                if json
                else f"Evaluation {run.pk} queued: follow it at /evaluations/{run.pk}/"
            )
            return
        progress = lambda percent, message: self.stderr.write(f"[{percent:3d}%] {message}")  # noqa: E731
        run = evaluation_run_execute(run_id=run.pk, on_progress=progress)
        if run.status != JobStatus.DONE:
            raise CommandError(f"Evaluation {run.pk} {run.status}: {run.error or run.message}")
        if json:
            self.stdout.write(jsonlib.dumps(evaluation_run_as_json(run), indent=2))
            return
        self.stdout.write(f"Evaluation {run.pk}: {run.examples} encounters of {run.patients} held-out patients")
        shown = [
            m
            for m in (*METRICS, "closeness_vs_general", "closeness_vs_pmlm")
            if any(row.get(m) is not None for row in run.rows)
        ]
        self.stdout.write(
            f"{'endpoint':<16}{'sources':<9}{'variant':<30}{'n':>4}" + "".join(f"{m[:24]:>26}" for m in shown)
        )
        for row in run.rows:
            cells = "".join(f"{_figure(row, m):>26}" for m in shown)
            self.stdout.write(
                f"{row['endpoint']:<16}{'on' if row['rag'] else 'off':<9}{VARIANT_LABELS[row['variant']]:<30}"
                f"{row['n']:>4}{cells}"
            )
        for note in run.report.get("notes", []):
            self.stdout.write(f"Note: {note}")


def _figure(row: dict, metric: str) -> str:
    value, ci = row.get(metric), row["ci"].get(metric)
    if value is None:
        return "—"
    digits = 0 if metric == "words" else 3
    return f"{value:.{digits}f} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else f"{value:.{digits}f}"
