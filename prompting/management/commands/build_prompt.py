import json

from django.core.management.base import BaseCommand, CommandError

from prompting.management.commands._patients import parse_day, patient_by_external_id
from prompting.prompts import PromptError, prompt_as_json, prompt_request


class Command(BaseCommand):
    help = "Build the personalised prompt for a patient (her FHIR Patient.id) and a question."

    def add_arguments(self, parser):
        parser.add_argument("--patient", required=True, help="The patient's FHIR Patient.id as imported.")
        parser.add_argument("--question", required=True)
        parser.add_argument("--at", help="Consultation date YYYY-MM-DD (default today): the record is read as of it.")
        parser.add_argument("--org", help="Organisation slug, needed only when the id exists in several organisations.")
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="Print the JSON object (docs/DESIGN.md)."
        )

    def handle(self, *args, patient, question, at, org, as_json, **options):
        at_date = parse_day(at)
        record = patient_by_external_id(patient, org)
        try:
            prompt = prompt_request(patient=record, question=question, at=at_date)
        except PromptError as exc:
            raise CommandError(str(exc)) from None
        if as_json:
            self.stdout.write(json.dumps(prompt_as_json(prompt), ensure_ascii=False))
        else:
            self.stdout.write(prompt.text)
