from django.contrib import admin
from django.db import models

from cdshooks.models import EHRClient
from cdshooks.services import ehr_client_register
from patients.admin import CuratedAdmin


@admin.register(EHRClient)
class EHRClientAdmin(CuratedAdmin):
    """Curators register the EHRs that call the clinic's CDS Hooks service and launch its workspace: the issuer of
    their JWTs, their public keys (a JWK Set, or the URL where they publish it), their FHIR server for SMART
    launches, and the organisation whose records they share."""

    list_display = ("name", "organisation", "issuer", "active", "created_at")
    list_filter = ("active",)
    search_fields = ("name", "issuer")
    fields = ("organisation", "name", "issuer", "jwks", "jwks_url", "fhir_base_url", "smart_client_id", "active")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}  # EHR endpoints are https

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        client = ehr_client_register(  # registering is one service, here and in `register_ehr`
            organisation=obj.organisation,
            name=obj.name,
            issuer=obj.issuer,
            jwks=obj.jwks,
            jwks_url=obj.jwks_url,
            fhir_base_url=obj.fhir_base_url,
            smart_client_id=obj.smart_client_id,
            active=obj.active,
            user=request.user,
        )
        obj.pk, obj._state.adding = client.pk, False
