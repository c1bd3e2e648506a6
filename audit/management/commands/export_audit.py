import json
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from audit.models import AuditEvent
from audit.services import audit_bundle, audit_link


class Command(BaseCommand):
    help = "Print audit entries as a FHIR R4 Bundle of AuditEvent resources."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="YYYY-MM-DD")
        parser.add_argument("--until", help="YYYY-MM-DD (inclusive)")
        parser.add_argument("--org", help="Organisation slug")

    def handle(self, *args, since, until, org, **options):
        audit_link()  # what was written so far, chained first
        events = AuditEvent.objects.order_by("id")
        try:
            if since:
                events = events.filter(at__date__gte=date.fromisoformat(since))
            if until:
                events = events.filter(at__date__lte=date.fromisoformat(until))
        except ValueError as exc:
            raise CommandError(f"Dates are YYYY-MM-DD: {exc}") from None
        if org:
            events = events.filter(organisation__slug=org)
        self.stdout.write(json.dumps(audit_bundle(events), indent=1))
