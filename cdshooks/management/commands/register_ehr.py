import json
from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from cdshooks.services import ehr_client_register
from patients.models import Organisation


class Command(BaseCommand):
    help = (
        "Trust an EHR to call the CDS Hooks service and launch the workspace for an organisation: the issuer of "
        "its JWTs and its public keys (a JWK Set file, or the URL where it publishes them). Curators do the same "
        "in the admin (Inside the EHR › EHR clients)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="The organisation whose records it shares (slug).")
        parser.add_argument("--name", required=True)
        parser.add_argument("--issuer", required=True, help="The 'iss' of its JWTs.")
        parser.add_argument("--jwks", type=Path, help="A file holding its public JWK Set.")
        parser.add_argument("--jwks-url", default="")
        parser.add_argument("--fhir-base-url", default="", help="Its FHIR server (the 'iss' of SMART launches).")
        parser.add_argument("--smart-client-id", default="", help="The clinic's client id at its SMART server.")

    def handle(self, *args, org, name, issuer, jwks, jwks_url, fhir_base_url, smart_client_id, **options):
        organisation = Organisation.objects.filter(slug=org).first()
        if organisation is None:
            raise CommandError(f"No organisation {org!r}.")
        try:
            keys = json.loads(jwks.read_text()) if jwks else None
        except (OSError, ValueError) as exc:
            raise CommandError(f"{jwks}: {exc}") from None
        try:
            client = ehr_client_register(
                organisation=organisation,
                name=name,
                issuer=issuer,
                jwks=keys,
                jwks_url=jwks_url,
                fhir_base_url=fhir_base_url,
                smart_client_id=smart_client_id,
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(f"Trusted {client.name} ({client.issuer}) for {organisation.slug}.")
