"""Finding a patient by her FHIR id from a command line."""

from datetime import date

from django.core.management.base import CommandError

from patients.models import Patient


def patient_by_external_id(external_id: str, org: str | None = None) -> Patient:
    matches = Patient.objects.filter(external_id=external_id)
    if org:
        matches = matches.filter(organisation__slug=org)
    found = list(matches.select_related("organisation")[:2])
    if not found:
        raise CommandError(f"No patient with id {external_id!r}" + (f" in {org}" if org else "") + ".")
    if len(found) > 1:
        raise CommandError(f"Patient id {external_id!r} exists in several organisations: name one with --org.")
    return found[0]


def parse_day(value: str | None) -> date | None:
    if not value:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"--at must be a date as YYYY-MM-DD, got {value!r}.") from None
