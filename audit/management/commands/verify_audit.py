from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_verify


class Command(BaseCommand):
    help = "Check the audit trail's hash chain; exits non-zero naming the first broken entry."

    def handle(self, *args, **options):
        checked, broken = audit_verify()
        if broken is not None:
            where = f"entry {broken.event_id}" if broken.event_id else "the chain's end"
            raise CommandError(f"Audit trail broken at {where}: {broken.reason} ({checked} entries before it are intact).")
        self.stdout.write(f"Audit trail intact: {checked} entries verified.")
