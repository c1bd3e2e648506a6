import json

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from patients.models import Organisation
from prompting.guidance import GuidanceError, comparison_run_create


class Command(BaseCommand):
    help = "Compare every configured LLM endpoint with and without retrieval on patients and questions."

    def add_arguments(self, parser):
        parser.add_argument("--patients", nargs="+", required=True, help="FHIR Patient.ids.")
        parser.add_argument("--questions", nargs="+", required=True)
        parser.add_argument("--endpoints", nargs="+", help="Endpoint names (default: every active endpoint).")
        parser.add_argument("--org", default=settings.PMLM_DEMO_ORGANISATION)
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, patients, questions, endpoints, org, as_json, **options):
        organisation = Organisation.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation '{org}'.")
        try:
            run = comparison_run_create(
                organisation=organisation,
                patient_ids=patients,
                questions=questions,
                endpoint_names=endpoints,
                run_inline=True,
            )
        except GuidanceError as exc:
            raise CommandError(str(exc)) from None
        if as_json:
            self.stdout.write(json.dumps({"run": run.pk, "rows": run.table}))
            return
        self.stdout.write(
            f"{'endpoint':<22}{'rag':>5}{'n':>4}{'failed':>8}{'latency ms':>12}{'tokens':>8}{'cited':>7}"
            f"{'warnings':>10}"
        )
        for row in run.table:
            self.stdout.write(
                f"{row['endpoint']:<22}{'on' if row['retrieval'] else 'off':>5}{row['requests']:>4}{row['failed']:>8}"
                f"{row['mean_latency_ms'] or '-':>12}{row['mean_completion_tokens'] or '-':>8}"
                f"{row['citation_rate'] if row['citation_rate'] is not None else '-':>7}{row['safety_warnings']:>10}"
            )
