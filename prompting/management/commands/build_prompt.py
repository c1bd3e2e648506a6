import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from patients.models import Patient
from prompting.services import PromptError, prompt_as_json, prompt_build


class Command(BaseCommand):
    help = "Build the personalised prompt for a patient (her FHIR Patient.id) and a question."

    def add_arguments(self, parser):
        parser.add_argument("--patient", required=True, help="The patient's FHIR Patient.id as imported.")
        parser.add_argument("--question", required=True)
        parser.add_argument("--at", help="Consultation date YYYY-MM-DD (default today): the record is read as of it.")
        parser.add_argument("--org", help="Organisation slug, needed only when the id exists in several organisations.")
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print the JSON object (DESIGN.md).")

    def handle(self, *args, patient, question, at, org, as_json, **options):
        at_date = None
        if at:
            try:
                at_date = date.fromisoformat(at)
            except ValueError:
                raise CommandError(f"--at must be a date as YYYY-MM-DD, got {at!r}.") from None
        matches = Patient.objects.filter(external_id=patient)
        if org:
            matches = matches.filter(organisation__slug=org)
        found = list(matches.select_related("organisation")[:2])
        if not found:
            raise CommandError(f"No patient with id {patient!r}" + (f" in {org}" if org else "") + ".")
        if len(found) > 1:
            raise CommandError(f"Patient id {patient!r} exists in several organisations: name one with --org.")
        try:
            prompt = prompt_build(patient=found[0], question=question, at=at_date)
        except PromptError as exc:
            raise CommandError(str(exc)) from None
        if as_json:
            self.stdout.write(json.dumps(prompt_as_json(prompt), ensure_ascii=False))
        else:
            self.stdout.write(prompt.text)
