from django.conf import settings
from django.core.management.base import BaseCommand

from audit.services import audit_purge


class Command(BaseCommand):
    help = (
        "Delete audit entries older than the retention (PMLM_AUDIT_RETENTION_DAYS, default six years); "
        "the chain stays verifiable."
    )

    def add_arguments(self, parser):
        parser.add_argument("--days", type=int, default=None)

    def handle(self, *args, days, **options):
        deleted = audit_purge(older_than_days=days)
        self.stdout.write(f"Deleted {deleted} entries older than {days or settings.PMLM_AUDIT_RETENTION_DAYS} days.")
