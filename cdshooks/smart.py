"""SMART App Launch (EHR launch) of the consultation workspace. The HTTP steps live in `smart_views`.

With an authorisation server configured for the EHR (`EHRClient.smart_client_id`), the launch is the standard
one: the app reads the EHR's `.well-known/smart-configuration`, sends the browser to its authorisation endpoint
with the `launch` it was given, PKCE (S256) and a `state`, exchanges the code at the token endpoint and opens the
workspace of the patient the token names. Without one (the demo), the clinician's own sign-in to the clinic is
enough, and the patient comes from the card's link.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import httpx

SCOPES = "launch openid fhirUser patient/Patient.rs"
TIMEOUT_SECONDS = 3.0


class LaunchError(Exception):
    """A launch that cannot open a workspace: the message says why, for the clinician and the EHR's team."""


def pkce_pair() -> tuple[str, str]:
    """(code_verifier, code_challenge) for S256 (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def smart_configuration(iss: str, *, client: httpx.Client | None = None) -> dict:
    """The EHR's SMART configuration: its authorisation and token endpoints."""
    url = f"{iss.rstrip('/')}/.well-known/smart-configuration"
    try:
        response = (client or httpx).get(url, timeout=TIMEOUT_SECONDS, headers={"Accept": "application/json"})
        response.raise_for_status()
        config = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LaunchError(f"The EHR's SMART configuration could not be read from {url}: {exc}") from None
    if not all(isinstance(config.get(k), str) for k in ("authorization_endpoint", "token_endpoint")):
        raise LaunchError(f"{url} names no authorization_endpoint and token_endpoint.")
    return config


def authorize_url(
    config: dict, *, client_id: str, redirect_uri: str, launch: str, iss: str, state: str, challenge: str
) -> str:
    query = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "launch": launch,
        "scope": SCOPES,
        "state": state,
        "aud": iss,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{config['authorization_endpoint']}?{urlencode(query)}"


def exchange_code(
    token_endpoint: str,
    *,
    code: str,
    redirect_uri: str,
    client_id: str,
    verifier: str,
    client: httpx.Client | None = None,
) -> dict:
    """The token response (access_token, patient, …) for an authorisation code."""
    try:
        response = (client or httpx).post(
            token_endpoint,
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
            },
            headers={"Accept": "application/json"},
            timeout=TIMEOUT_SECONDS,
        )
        response.raise_for_status()
        token = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise LaunchError(f"The EHR's authorisation server refused the code: {exc}") from None
    if not isinstance(token, dict) or not isinstance(token.get("access_token"), str):
        raise LaunchError("The EHR's token response has no access_token.")
    if not isinstance(token.get("patient"), str) or not token["patient"]:
        raise LaunchError("The EHR's token response names no patient: launch from her chart.")
    return token
