from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_latest_anchor, audit_verify, audit_waiting


class Command(BaseCommand):
    help = (
        "Check the audit trail's keyed hash chain, its head's seal and its latest anchor; exits non-zero naming the "
        "first broken entry."
    )

    def handle(self, *args, **options):
        checked, broken = audit_verify()
        if broken is not None:
            where = f"entry {broken.event_id}" if broken.event_id else "the chain's end"
            waiting = audit_waiting()
            raise CommandError(
                f"Audit trail broken at {where}: {broken.reason} ({checked} entries before it are intact)."
                + (f" {waiting} newer entries wait in the inbox, unlinked until it is repaired." if waiting else "")
            )
        anchor = audit_latest_anchor()
        self.stdout.write(
            f"Audit trail intact: {checked} entries verified"
            + (f", the latest anchor ({anchor[0].name}) included." if anchor else "; no anchor yet (anchor_audit).")
        )
