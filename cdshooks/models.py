"""EHRs registered to call the clinic's CDS Hooks services and launch its workspace, and the token ids they used."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords


def _validate_jwks(value):
    if value in (None, {}):
        return
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not keys or not all(isinstance(k, dict) and k.get("kty") for k in keys):
        raise ValidationError('A JWK Set is a JSON object {"keys": [...]} with at least one key that has a "kty".')
    if any("d" in k for k in keys):
        raise ValidationError("This JWK Set holds a private key (a 'd' member): register the EHR's public keys only.")


class EHRClient(models.Model):
    """An EHR (or other CDS client) the clinic trusts: what it signs its JWTs with, and whose records it shares."""

    organisation = models.ForeignKey("patients.Organisation", on_delete=models.CASCADE, related_name="ehr_clients")
    name = models.CharField(max_length=100, help_text="What curators call it, e.g. 'Epic (maternity unit)'.")
    issuer = models.CharField(
        max_length=255,
        unique=True,
        help_text="The 'iss' of the JWTs it signs, exactly as it sends it.",
    )
    jwks = models.JSONField(
        default=dict,
        blank=True,
        validators=[_validate_jwks],
        help_text='Its public keys as a JWK Set ({"keys": [...]}); or leave empty and give a JWKS URL.',
    )
    jwks_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Where it publishes its JWK Set (fetched when a token names a key not yet known). "
        "A token's 'jku' header must be this URL.",
    )
    fhir_base_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Its FHIR server's base URL: the 'iss' of its SMART launches.",
    )
    smart_client_id = models.CharField(
        max_length=255,
        blank=True,
        help_text="The clinic's client id at its SMART authorisation server. Empty: launches rely on the "
        "clinician's own sign-in to the clinic (the demo).",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    history = HistoricalRecords()  # who trusted which keys, and when

    class Meta:
        ordering = ["organisation__name", "name"]
        verbose_name = "EHR client"

    def __str__(self):
        return f"{self.name} ({self.organisation})"

    def save(self, *args, **kwargs):
        self.fhir_base_url = self.fhir_base_url.rstrip("/")
        super().save(*args, **kwargs)

    def clean(self):
        if not self.jwks and not self.jwks_url:
            raise ValidationError("Give its public keys (JWK Set) or the URL where it publishes them.")


class UsedTokenId(models.Model):
    """A JWT id ('jti') already presented by an EHR: a second use is a replay. Kept until the token expires."""

    client = models.ForeignKey(EHRClient, on_delete=models.CASCADE, related_name="+")
    jti = models.CharField(max_length=255)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["client", "jti"], name="jti_used_once_per_client")]
