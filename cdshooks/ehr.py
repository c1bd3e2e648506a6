"""Playing the EHR: what its FHIR server answers to the service's prefetch templates for a patient, a
patient-view call carrying it, and the JWT it signs. No Django import.

The example script (`examples/ehr_cds_hooks.py`), the tests and the benchmark use it to call the service as an
EHR would; the service itself never does.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
import time
import uuid
from datetime import date, timedelta

import jwt

from cdshooks.prefetch import HOOK, PREFETCH
from patients.demo.synthea import SYNTHEA_DIR, days_since_export

_DATE = re.compile(r"^(\d{4}-\d{2}-\d{2})(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")


def _shifted(value, days: int):
    if isinstance(value, dict):
        return {k: _shifted(v, days) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, days) for v in value]
    if isinstance(value, str) and days:
        match = _DATE.match(value)
        if match:
            try:
                day = date.fromisoformat(match.group(1)) + timedelta(days=days)
            except ValueError:
                return value
            return day.isoformat() + (match.group(2) or "")
    return value


def _relative(value, index: dict[str, str]):
    """Bundle-local references (urn:uuid:…) rewritten as a FHIR server writes them (Type/id)."""
    if isinstance(value, dict):
        return {
            k: (index.get(v, v) if k == "reference" and isinstance(v, str) else _relative(v, index))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_relative(v, index) for v in value]
    return value


def prefetch_from_bundle(bundle: dict, *, shift_days: int = 0) -> tuple[str, dict]:
    """(her FHIR id, the prefetch an EHR holding this patient's bundle would send): her Patient resource and a
    searchset Bundle per search template, every date moved by `shift_days` (as the demo moves Synthea's)."""
    resources = [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]
    index = {
        e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}"
        for e in bundle.get("entry", [])
        if e.get("fullUrl") and isinstance(e.get("resource"), dict) and e["resource"].get("id")
    }
    resources = [_shifted(_relative(copy.deepcopy(r), index), shift_days) for r in resources]
    patient = next(r for r in resources if r["resourceType"] == "Patient")
    prefetch: dict = {"patient": patient}
    for key, (template, resource_type) in PREFETCH.items():
        if key == "patient":
            continue
        found = [r for r in resources if r["resourceType"] == resource_type]
        prefetch[key] = (
            {
                "resourceType": "Bundle",
                "type": "searchset",
                "total": len(found),
                "entry": [
                    {"fullUrl": f"{resource_type}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in found
                ],
            }
            if found
            else None
        )
    return patient["id"], prefetch


def synthea_prefetch(patient_id: str, today: date) -> tuple[str, dict]:
    """A shipped Synthea patient as the demo's EHR would hold her: dated as the demo dates her."""
    with gzip.open(SYNTHEA_DIR / f"{patient_id}.json.gz", "rb") as handle:
        bundle = json.loads(handle.read())
    return prefetch_from_bundle(bundle, shift_days=days_since_export(today))


def patient_view_body(
    patient_id: str, prefetch: dict | None = None, *, user_id: str = "Practitioner/example", **extra
) -> dict:
    body = {
        "hookInstance": str(uuid.uuid4()),
        "hook": HOOK,
        "context": {"userId": user_id, "patientId": patient_id},
        **extra,
    }
    if prefetch is not None:
        body["prefetch"] = prefetch
    return body


def signed_jwt(
    private_key, *, kid: str, issuer: str, audience: str, algorithm: str = "ES384", lifetime: int = 300, **claims
) -> str:
    """The bearer token an EHR sends: signed with its private key, naming the service URL it calls."""
    now = int(time.time())
    payload = {"iss": issuer, "aud": audience, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(payload, private_key, algorithm=algorithm, headers={"kid": kid, "typ": "JWT"})


def public_jwks(private_key, *, kid: str, algorithm: str = "ES384") -> dict:
    """The JWK Set (public key only) a curator registers for the EHR."""
    algorithms = jwt.algorithms.get_default_algorithms()
    public = algorithms[algorithm].to_jwk(private_key.public_key(), as_dict=True)
    return {"keys": [{**public, "kid": kid, "alg": algorithm, "use": "sig"}]}
