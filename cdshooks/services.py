"""The CDS Hooks service and the EHR clients that call it. Every surface (the hook's view, the example script's
EHR, the benchmark) calls these functions."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from cdshooks.cards import patient_view_cards
from cdshooks.models import EHRClient
from cdshooks.prefetch import HOOK, HookError, fetch_missing, hook_request, record_bundle, templates
from patients.fhir.parse import FhirError, parse_bundle
from patients.models import Patient
from patients.services import patient_import_bundle
from prompting.peer_models import peer_summary_for
from prompting.pmlm.selfinformed import summarise
from prompting.selectors import patient_history

SERVICE_ID = "pmlm-antenatal"
SERVICE = {
    "hook": HOOK,
    "id": SERVICE_ID,
    "title": "PMLM clinic: antenatal risk flags and similar patients",
    "description": "When a chart opens: her WHO antenatal risk flags with their evidence, what similar patients' "
    "physicians most often recommended, and a link that opens her personalised-guidance workspace. No LLM is "
    "called while the EHR waits.",
    "prefetch": templates(),
}


def ehr_client_register(
    *,
    organisation,
    name: str,
    issuer: str,
    jwks: dict | None = None,
    jwks_url: str = "",
    fhir_base_url: str = "",
    smart_client_id: str = "",
    active: bool = True,
    user=None,
) -> EHRClient:
    """Trust an EHR (or update the one with this issuer, in the same organisation): its keys, its FHIR server.

    Raises ValidationError (a private key, no keys, an issuer another organisation registered)."""
    client = EHRClient.objects.filter(issuer=issuer).first()
    if client is not None and client.organisation_id != organisation.pk:
        raise ValidationError("This issuer is registered to another organisation.")
    client = client or EHRClient(organisation=organisation, issuer=issuer, created_by=user)
    client.name, client.jwks, client.jwks_url = name, jwks or {}, jwks_url
    client.fhir_base_url, client.smart_client_id, client.active = fhir_base_url, smart_client_id, active
    client.full_clean()
    with transaction.atomic():
        client.save()
        audit_record(AuditAction.ADMIN_CHANGE, obj=client, actor=user, details={"registered": True})
    return client


def discovery() -> dict:
    return {"services": [SERVICE]}


def patient_view_call(*, client: EHRClient, body, launch_url: str) -> dict:
    """Answer a patient-view call from a trusted EHR: her record (prefetched, or fetched from the EHR's FHIR
    server) is parsed strictly and upserted into the EHR's organisation as an import is, then her cards.

    Raises HookError (400: the request names what is wrong; 412: her data could not be obtained): nothing is
    stored then."""
    request = hook_request(body)
    prefetch = {**request.prefetch, **fetch_missing(request, timeout=settings.PMLM_CDS_FHIR_TIMEOUT_SECONDS)}
    bundle = record_bundle(prefetch, request.patient_id)
    try:
        parsed = parse_bundle(bundle, max_entries=settings.PMLM_MAX_BUNDLE_ENTRIES)
    except FhirError as exc:
        raise HookError(exc.reason, where=" ".join(p for p in (exc.resource, exc.field) if p) or "prefetch") from None
    organisation = client.organisation
    with transaction.atomic():
        result = patient_import_bundle(
            organisation=organisation,
            bundle=bundle,
            parsed=parsed,
            source=f"CDS Hooks {HOOK} from {client.name}, hook instance {request.hook_instance}",
        )
        if not result.ok:
            raise HookError(result.error, where=" ".join(p for p in (result.error_resource, result.error_field) if p))
        patient = Patient.objects.get(organisation=organisation, external_id=request.patient_id)
        history = patient_history(patient, timezone.now().date())
        summary = summarise(history)
        peer = peer_summary_for(patient)[0]
        cards = patient_view_cards(
            summary,
            peer.situated(summary.pregnancy) if peer else None,
            workspace={
                "label": "Open her PMLM workspace",
                # The EHR appends `iss` and `launch`; the patient rides along for launches without a SMART server.
                "url": f"{launch_url}?{urlencode({'patient': request.patient_id})}",
                "type": "smart",
                "appContext": request.patient_id,
            },
        )
        audit_record(
            AuditAction.CDS_HOOK,
            obj=patient,
            details={
                "client": client.pk,
                "hook": HOOK,
                "cards": len(cards),
                "flags": [flag.code for flag in summary.flags],
                "bundle_import": result.bundle_import_id,
            },
        )
    return {"cards": cards}


def hook_refused(*, code: str) -> None:
    """A call that failed authentication, on the audit trail (its reason code only; nothing it carried)."""
    audit_record(AuditAction.CDS_HOOK_REFUSED, object_type="cdshooks.EHRClient", details={"reason": code})
