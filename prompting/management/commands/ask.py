import json

from django.core.management.base import BaseCommand, CommandError

from patients.models import JobStatus
from prompting.endpoints import endpoint_named
from prompting.errors import GuidanceError
from prompting.guidance import guidance_as_json, guidance_request_create
from prompting.management.commands._patients import parse_day, patient_by_external_id
from prompting.prompts import PromptError


class Command(BaseCommand):
    help = "Ask for guidance about one patient, in-process (no worker needed)."

    def add_arguments(self, parser):
        parser.add_argument("--patient", required=True, help="Her FHIR Patient.id as imported.")
        parser.add_argument("--question", required=True)
        parser.add_argument("--at", help="Consultation date YYYY-MM-DD (default today).")
        parser.add_argument("--backend", help="Name of an LLM endpoint (default: the default endpoint).")
        parser.add_argument("--no-rag", action="store_true", help="Answer without retrieved guidance.")
        parser.add_argument("--org", help="Organisation slug, when the id exists in several.")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, patient, question, at, backend, no_rag, org, as_json, **options):
        record = patient_by_external_id(patient, org)
        try:
            endpoint = endpoint_named(backend) if backend else None
            guidance = guidance_request_create(
                patient=record,
                question=question,
                at=parse_day(at),
                endpoint=endpoint,
                use_retrieval=not no_rag,
                run_inline=True,
            )
        except (GuidanceError, PromptError) as exc:
            raise CommandError(str(exc)) from None
        data = guidance_as_json(guidance)
        if as_json:
            self.stdout.write(json.dumps(data, ensure_ascii=False))
        else:
            self.stdout.write(data["guidance"] or "")
            for c in data["citations"]:
                self.stdout.write(f"[{c['n']}] {c['title']}")
            for w in data["warnings"]:
                self.stdout.write(f"WARNING: {w['message']}")
            self.stdout.write(f"— {data['model']} via {data['endpoint']}, {data['latency_ms']} ms. {data['notice']}")
        if guidance.status != JobStatus.DONE:
            raise CommandError(f"Guidance failed: {guidance.error}")
