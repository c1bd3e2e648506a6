"""CDS Hooks 2.0 over HTTP: discovery, and the patient-view service. JSON in and out, never HTML."""

from __future__ import annotations

from django.conf import settings
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET

from cdshooks.auth import ClientAuthError, client_from_token
from cdshooks.prefetch import HookError
from cdshooks.services import SERVICE_ID, discovery, hook_refused, patient_view_call
from pmlm_site import safejson


def _absolute(request, path: str) -> str:
    """A URL of this service as EHRs call it: the JWT's 'aud' must be exactly this."""
    return f"{settings.PMLM_CDS_BASE_URL}{path}" if settings.PMLM_CDS_BASE_URL else request.build_absolute_uri(path)


def _error(message: str, status: int, **extra) -> JsonResponse:
    return JsonResponse({"error": message, **extra}, status=status)


@require_GET
def services(request):
    """Discovery: which services the clinic offers and what each asks the EHR to prefetch. Public: it names no
    patient and no organisation."""
    return JsonResponse(discovery())


@csrf_exempt
def service(request, service_id: str):
    if request.method != "POST":
        response = _error("A CDS service is called with POST.", 405)
        response["Allow"] = "POST"
        return response
    if service_id != SERVICE_ID:
        return _error(f"No CDS service {service_id!r:.60}; GET /cds-services lists them.", 404)
    try:
        client = client_from_token(request.headers.get("Authorization", ""), audience=_absolute(request, request.path))
    except ClientAuthError as exc:
        hook_refused(code=exc.code)
        response = _error(str(exc), 401)
        response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return response
    length = request.headers.get("Content-Length", "")
    if (int(length) if length.isdigit() else 0) > settings.PMLM_CDS_MAX_REQUEST_BYTES:
        return _error(
            f"The call is larger than the {settings.PMLM_CDS_MAX_REQUEST_BYTES // 1024 // 1024} MiB limit.", 413
        )
    try:
        body = safejson.loads(request.body)
    except (ValueError, UnicodeDecodeError) as exc:
        return _error(f"The body is not JSON: {str(exc)[:200]}", 400)
    launch_url = _absolute(request, reverse("smart-launch"))
    try:
        return JsonResponse(patient_view_call(client=client, body=body, launch_url=launch_url))
    except HookError as exc:
        return _error(str(exc), exc.status, where=exc.where)
