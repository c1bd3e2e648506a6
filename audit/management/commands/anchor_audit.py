from django.core.management.base import BaseCommand, CommandError

from audit.services import AuditChainBroken, audit_anchor


class Command(BaseCommand):
    help = (
        "Verify the audit chain, then write its signed head to PMLM_AUDIT_ANCHOR_DIR, outside the database; "
        "verify_audit then checks the chain still contains it. Beat runs this hourly."
    )

    def handle(self, *args, **options):
        try:
            path = audit_anchor()
        except AuditChainBroken as exc:
            raise CommandError(f"Not anchored. {exc}") from None
        self.stdout.write(
            f"Anchored the chain's head in {path}." if path else "The audit trail is empty: nothing to anchor."
        )
