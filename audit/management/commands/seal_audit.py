from django.core.management.base import BaseCommand, CommandError

from audit.services import AuditChainBroken, audit_keyring, audit_seal


class Command(BaseCommand):
    help = (
        "Check the whole audit chain (plain SHA-256 entries from before keying, keyed ones under PMLM_AUDIT_KEY or "
        "PMLM_AUDIT_RETIRED_KEYS), then re-hash every entry under PMLM_AUDIT_KEY and anchor it. "
        "Refuses a broken chain. "
        "Run after a key rotation to retire the old key."
    )

    def handle(self, *args, **options):
        try:
            count = audit_seal()
        except AuditChainBroken as exc:
            raise CommandError(f"Not sealed. {exc}") from None
        self.stdout.write(f"Sealed {count} entries under key {audit_keyring().current_id}.")
