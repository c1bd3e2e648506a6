from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from patients.services import fhir_import_paths, organisation_get_or_create


class Command(BaseCommand):
    help = "Import FHIR R4 Bundles (.json, .json.gz or folders of them); each bundle all-or-nothing."

    def add_arguments(self, parser):
        parser.add_argument("paths", nargs="+", help="Bundle files or folders.")
        parser.add_argument(
            "--org",
            default=settings.PMLM_DEMO_ORGANISATION,
            help="Organisation slug; created when missing (default: the demo organisation).",
        )

    def handle(self, *args, paths, org, **options):
        try:
            organisation = organisation_get_or_create(slug=org)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        results = fhir_import_paths(
            organisation=organisation, paths=paths, on_result=lambda r: self.stdout.write(r.summary())
        )
        if not results:
            raise CommandError("No bundle found in: " + ", ".join(paths))
        failed = [r for r in results if not r.ok]
        self.stdout.write(f"{len(results) - len(failed)} of {len(results)} bundles imported into {organisation.slug}.")
        if failed:
            raise CommandError(f"{len(failed)} bundle(s) rejected:\n" + "\n".join(r.error for r in failed))
