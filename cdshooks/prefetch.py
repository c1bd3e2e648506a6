"""The patient-view hook's request and the FHIR data it brings: read strictly, assembled into one Bundle for the
importer. No Django import.

The service asks the EHR to prefetch her Patient resource and searches for her Observations, Conditions,
MedicationRequests, Encounters and Procedures (`PREFETCH`). What the EHR did not prefetch is fetched from its
`fhirServer` with the `fhirAuthorization` it gave, within a deadline; when that cannot be done the call is answered
412, as the specification asks, because cards computed from half a record would mislead (no blood pressure is not a
normal blood pressure).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

HOOK = "patient-view"
PATIENT_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # a FHIR id
# Prefetch key → (template, the resource type its answer holds)
PREFETCH: dict[str, tuple[str, str]] = {
    "patient": ("Patient/{{context.patientId}}", "Patient"),
    "observations": ("Observation?patient={{context.patientId}}", "Observation"),
    "conditions": ("Condition?patient={{context.patientId}}", "Condition"),
    "medications": ("MedicationRequest?patient={{context.patientId}}", "MedicationRequest"),
    "encounters": ("Encounter?patient={{context.patientId}}", "Encounter"),
    # Procedures date the end of a pregnancy (a birth, a termination) and raise "previous caesarean section":
    # without them a woman who has given birth would still read as pregnant.
    "procedures": ("Procedure?patient={{context.patientId}}", "Procedure"),
}


class HookError(ValueError):
    """A call the service cannot answer with cards: `status` 400 (the request is wrong: says where) or 412 (the
    data it needs could not be obtained)."""

    def __init__(self, message: str, *, status: int = 400, where: str = ""):
        self.status, self.where = status, where
        super().__init__(f"{where}: {message}" if where else message)


@dataclass
class HookRequest:
    hook_instance: str
    patient_id: str
    user_id: str = ""
    fhir_server: str = ""
    access_token: str = ""
    prefetch: dict[str, Any] = field(default_factory=dict)


def templates() -> dict[str, str]:
    return {key: template for key, (template, _) in PREFETCH.items()}


def hook_request(body: Any) -> HookRequest:
    """The call's fields, checked: a clear 400 naming the field for anything else."""
    if not isinstance(body, dict):
        raise HookError("must be a JSON object", where="request")
    if body.get("hook") != HOOK:
        raise HookError(f"must be {HOOK!r}, got {body.get('hook')!r:.40}", where="hook")
    instance = body.get("hookInstance")
    if not isinstance(instance, str) or not 1 <= len(instance) <= 100:
        raise HookError("is required: the UUID of this call", where="hookInstance")
    context = body.get("context")
    if not isinstance(context, dict):
        raise HookError("is required and must be an object", where="context")
    patient_id = context.get("patientId")
    if not isinstance(patient_id, str) or not PATIENT_ID.fullmatch(patient_id):
        raise HookError("is required: the FHIR id of the patient in view", where="context.patientId")
    user_id = context.get("userId", "")
    if not isinstance(user_id, str):
        raise HookError("must be a string", where="context.userId")
    server = body.get("fhirServer", "")
    if not isinstance(server, str) or (server and not server.startswith(("https://", "http://"))):
        raise HookError("must be the base URL of the EHR's FHIR server", where="fhirServer")
    authorization = body.get("fhirAuthorization")
    token = ""
    if authorization is not None:
        if not isinstance(authorization, dict) or not isinstance(authorization.get("access_token"), str):
            raise HookError("must be an object with an access_token", where="fhirAuthorization")
        if not server:
            raise HookError("is required when fhirAuthorization is given", where="fhirServer")
        token = authorization["access_token"]
    prefetch = body.get("prefetch", {})
    if not isinstance(prefetch, dict):
        raise HookError("must be an object", where="prefetch")
    return HookRequest(instance, patient_id, user_id, server.rstrip("/"), token, prefetch)


def missing_keys(request: HookRequest) -> list[str]:
    """The prefetch keys the EHR did not send (a key sent as null means it has no such data: not missing)."""
    return [key for key in PREFETCH if key not in request.prefetch]


def fetch_missing(request: HookRequest, *, timeout: float, client: httpx.Client | None = None) -> dict[str, Any]:
    """What was not prefetched, read from the EHR's FHIR server within `timeout` seconds in all; 412 otherwise."""
    keys = missing_keys(request)
    if not keys:
        return {}
    if not request.fhir_server or not request.access_token:
        raise HookError(
            f"{', '.join(keys)} {'was' if len(keys) == 1 else 'were'} not prefetched and no fhirServer with "
            "fhirAuthorization was given to fetch them from",
            status=412,
            where="prefetch",
        )
    deadline = time.monotonic() + timeout
    headers = {"Authorization": f"Bearer {request.access_token}", "Accept": "application/fhir+json"}
    fetched = {}
    http = client or httpx.Client()
    try:
        for key in keys:
            left = deadline - time.monotonic()
            query = PREFETCH[key][0].replace("{{context.patientId}}", request.patient_id)
            url = f"{request.fhir_server}/{query}"
            if left <= 0:
                raise HookError(f"the EHR's FHIR server did not answer within {timeout:g} s", status=412, where=url)
            try:
                response = http.get(url, headers=headers, timeout=left)
            except httpx.TimeoutException:
                raise HookError(
                    f"the EHR's FHIR server did not answer within {timeout:g} s", status=412, where=url
                ) from None
            except httpx.HTTPError as exc:
                raise HookError(f"the EHR's FHIR server could not be reached: {exc}", status=412, where=url) from None
            if response.status_code == 404 and key == "patient":
                raise HookError("the EHR's FHIR server has no such patient", status=412, where=url)
            if response.status_code != 200:
                raise HookError(f"the EHR's FHIR server answered {response.status_code}", status=412, where=url)
            try:
                fetched[key] = response.json()
            except ValueError:
                raise HookError(
                    "the EHR's FHIR server answered with something other than JSON", status=412, where=url
                ) from None
    finally:
        if client is None:
            http.close()
    return fetched


def record_bundle(prefetch: dict[str, Any], patient_id: str) -> dict:
    """One collection Bundle of her Patient resource and every resource of the searches, for the importer.

    Checks what the importer cannot know: each key holds what its template asks for, and every resource is
    about the patient in context (a resource about anyone else is refused, never filed under her)."""
    patient = prefetch.get("patient")
    if not isinstance(patient, dict):
        raise HookError("is required: her Patient resource", where="prefetch.patient")
    if patient.get("resourceType") != "Patient":
        raise HookError(
            f"must be a Patient, got {patient.get('resourceType')!r:.40}", where="prefetch.patient.resourceType"
        )
    if patient.get("id") != patient_id:
        raise HookError(
            f"is {patient.get('id')!r:.70}, not the patient in context ({patient_id})", where="prefetch.patient.id"
        )
    entries = [{"fullUrl": f"Patient/{patient_id}", "resource": patient}]
    for key, (_, resource_type) in PREFETCH.items():
        if key == "patient" or prefetch.get(key) is None:
            continue
        entries += _search_entries(key, prefetch[key], resource_type, patient_id)
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def _search_entries(key: str, bundle: Any, resource_type: str, patient_id: str) -> list[dict]:
    where = f"prefetch.{key}"
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise HookError("must be a searchset Bundle (or null when she has none)", where=where)
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise HookError("must be a list", where=f"{where}.entry")
    out = []
    for n, entry in enumerate(entries):
        at = f"{where}.entry[{n}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise HookError("must be an object with a resource", where=at)
        resource = entry["resource"]
        if (entry.get("search") or {}).get("mode") == "outcome" or resource.get("resourceType") == "OperationOutcome":
            continue  # the server's notes about the search, not her record
        if resource.get("resourceType") != resource_type:
            raise HookError(
                f"must be a {resource_type}, got {resource.get('resourceType')!r:.40}",
                where=f"{at}.resource.resourceType",
            )
        subject = resource.get("subject") or resource.get("patient") or {}
        reference = subject.get("reference") if isinstance(subject, dict) else None
        if isinstance(reference, str) and reference.rstrip("/").split("/")[-2:] != ["Patient", patient_id]:
            raise HookError(
                f"is about {reference!r:.80}, not the patient in context (Patient/{patient_id})",
                where=f"{at}.resource.subject.reference",
            )
        out.append({"resource": resource})
    return out
