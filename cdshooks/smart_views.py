"""The SMART launch's two HTTP steps: `launch` (from the EHR) and `callback` (from its authorisation server).

A clinician must be signed in to the clinic as a member of the organisation the EHR is registered to; she lands
on the patient's workspace, or on a page that says why not."""

from __future__ import annotations

import secrets
import time

from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET

from audit.models import AuditAction
from audit.services import audit_record
from cdshooks.models import EHRClient
from cdshooks.smart import LaunchError, authorize_url, exchange_code, pkce_pair, smart_configuration
from patients import selectors
from patients.models import Patient

SESSION_KEY = "smart_launches"
STATE_SECONDS = 600


def _refused(request, message: str, status: int = 400):
    return render(request, "cdshooks/launch_refused.html", {"message": message}, status=status)


def _open_workspace(request, client: EHRClient, patient_fhir_id: str, how: str):
    membership = selectors.page_membership_for(request.user)
    if membership.organisation_id != client.organisation_id:
        audit_record(
            AuditAction.ACCESS_DENIED,
            object_type="cdshooks.EHRClient",
            object_id=client.pk,
            details={"reason": "smart launch from another organisation's EHR"},
        )
        return _refused(request, "This EHR is registered to another organisation than yours.", 403)
    patient = Patient.objects.filter(organisation=client.organisation, external_id=patient_fhir_id).first()
    if patient is None:
        return _refused(
            request,
            "This patient has not been shared with the clinic yet: open her chart in the EHR "
            "so its CDS Hooks call shares her record, then launch again.",
            404,
        )
    audit_record(AuditAction.SMART_LAUNCH, obj=patient, details={"client": client.pk, "how": how})
    return redirect("workspace:patient", pk=patient.pk)


@require_GET
@login_required
def launch(request):
    iss = request.GET.get("iss", "")
    client = EHRClient.objects.filter(fhir_base_url__in={iss, iss.rstrip("/")}, active=True).first() if iss else None
    if client is None:
        return _refused(request, "The launch names no EHR registered with the clinic ('iss').")
    if not client.smart_client_id:  # the demo: her link names her, the clinician's sign-in is the authorisation
        patient_id = request.GET.get("patient", "")
        if not patient_id:
            return _refused(request, "This EHR has no SMART authorisation configured, and the link names no patient.")
        return _open_workspace(request, client, patient_id, "signed-in clinician")
    launch_token = request.GET.get("launch", "")
    if not launch_token:
        return _refused(request, "An EHR launch needs its 'launch' parameter.")
    try:
        config = smart_configuration(client.fhir_base_url)
    except LaunchError as exc:
        return _refused(request, str(exc), 502)
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(24)
    launches = {k: v for k, v in request.session.get(SESSION_KEY, {}).items() if v["at"] > time.time() - STATE_SECONDS}
    launches[state] = {
        "client": client.pk,
        "verifier": verifier,
        "token_endpoint": config["token_endpoint"],
        "at": time.time(),
    }
    request.session[SESSION_KEY] = launches
    return redirect(
        authorize_url(
            config,
            client_id=client.smart_client_id,
            redirect_uri=request.build_absolute_uri(reverse("smart-callback")),
            launch=launch_token,
            iss=client.fhir_base_url,
            state=state,
            challenge=challenge,
        )
    )


@require_GET
@login_required
def callback(request):
    launches = request.session.get(SESSION_KEY, {})
    pending = launches.pop(request.GET.get("state", ""), None)
    request.session[SESSION_KEY] = launches
    if pending is None or pending["at"] < time.time() - STATE_SECONDS:
        return _refused(request, "This launch is unknown or has expired ('state'): launch again from the EHR.")
    if request.GET.get("error"):
        return _refused(request, f"The EHR refused the launch: {request.GET.get('error')[:100]}.", 403)
    client = EHRClient.objects.filter(pk=pending["client"], active=True).first()
    if client is None:
        return _refused(request, "The EHR of this launch is no longer registered.", 403)
    try:
        token = exchange_code(
            pending["token_endpoint"],
            code=request.GET.get("code", ""),
            redirect_uri=request.build_absolute_uri(reverse("smart-callback")),
            client_id=client.smart_client_id,
            verifier=pending["verifier"],
        )
    except LaunchError as exc:
        return _refused(request, str(exc), 502)
    return _open_workspace(request, client, token["patient"], "SMART App Launch")
