"""Trusting CDS clients (CDS Hooks 2.0, "Trusting CDS Clients"): every call carries a JWT the EHR signed with
its private key; the clinic checks it against the public keys a curator registered for that EHR.

Checked: the signature (asymmetric algorithms only: never `none`, never a shared-secret HMAC), `iss` (a
registered, active EHR), `aud` (the URL of the service being called), `exp` and `iat` (with a small leeway for
clocks), a lifetime of at most `MAX_LIFETIME_SECONDS` (so the replay store stays small), and `jti` (never seen
before from that EHR). A token that fails any check is refused before anything is read or stored.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import jwt
from django.core.cache import cache
from django.db import IntegrityError, transaction

from cdshooks.models import EHRClient, UsedTokenId

ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
LEEWAY_SECONDS = 30
MAX_LIFETIME_SECONDS = 600
JWKS_TIMEOUT_SECONDS = 2.0
JWKS_CACHE_SECONDS = 600
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class ClientAuthError(Exception):
    """The call is not from an EHR the clinic trusts: answered 401, nothing read or stored.

    `code` is a short reason for the audit trail; the message says what was wrong for the EHR's developers."""

    def __init__(self, message: str, code: str):
        super().__init__(message)
        self.code = code


def client_from_token(authorization: str, *, audience: str) -> EHRClient:
    """The registered EHR that signed this call's bearer JWT, its token id now spent."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ClientAuthError("Authenticate with 'Authorization: Bearer <JWT>' signed by your EHR's key.", "no_token")
    token = token.strip()
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ClientAuthError(f"The bearer token is not a JWT: {exc}.", "malformed") from None
    algorithm = header.get("alg")
    if algorithm not in ALGORITHMS:
        raise ClientAuthError(
            f"JWTs must be signed with an asymmetric algorithm ({', '.join(ALGORITHMS)}); got {algorithm!r:.20}.",
            "algorithm",
        )
    if str(header.get("typ", "JWT")).upper() != "JWT":
        raise ClientAuthError("The JWT header's 'typ' must be 'JWT'.", "malformed")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise ClientAuthError("The JWT header must name its key ('kid').", "malformed")
    issuer = unverified.get("iss")
    client = (
        EHRClient.objects.select_related("organisation").filter(issuer=issuer, active=True).first()
        if isinstance(issuer, str) and issuer
        else None
    )
    if client is None:
        raise ClientAuthError(f"The issuer {issuer!r:.100} is not an EHR registered with this clinic.", "issuer")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_url:
        raise ClientAuthError("The JWT's 'jku' is not the JWK Set URL registered for this EHR.", "jku")
    key = _public_key(client, kid, algorithm)
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[algorithm],
            audience=audience,
            issuer=client.issuer,
            leeway=LEEWAY_SECONDS,
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise ClientAuthError("The JWT has expired.", "expired") from None
    except jwt.InvalidAudienceError:
        raise ClientAuthError(
            f"The JWT's 'aud' must be the URL of the service called: {audience}.", "audience"
        ) from None
    except jwt.InvalidSignatureError:
        raise ClientAuthError(
            "The JWT's signature does not verify with the EHR's registered key.", "signature"
        ) from None
    except jwt.PyJWTError as exc:
        raise ClientAuthError(f"The JWT was refused: {exc}.", "invalid") from None
    if not isinstance(claims["jti"], str) or not claims["jti"] or len(claims["jti"]) > 255:
        raise ClientAuthError("The JWT's 'jti' must be a string of 1 to 255 characters.", "invalid")
    if claims["exp"] - time.time() > MAX_LIFETIME_SECONDS:
        raise ClientAuthError(f"The JWT must expire within {MAX_LIFETIME_SECONDS // 60} minutes.", "lifetime")
    _spend(client, claims["jti"], claims["exp"])
    return client


def _spend(client: EHRClient, jti: str, exp: float) -> None:
    """Record the token id; a second call with it is a replay."""
    expires = datetime.fromtimestamp(exp + LEEWAY_SECONDS, tz=UTC)
    try:
        with transaction.atomic():
            used = UsedTokenId.objects.create(client=client, jti=jti, expires_at=expires)
    except IntegrityError:
        raise ClientAuthError("This JWT ('jti') was already used: each call needs a new token.", "replay") from None
    if used.pk % 100 == 0:  # now and then, forget ids whose tokens can no longer be presented
        UsedTokenId.objects.filter(expires_at__lt=datetime.now(tz=UTC)).delete()


def _public_key(client: EHRClient, kid: str, algorithm: str):
    """The EHR's public key named `kid`: from the registered JWK Set, else its JWKS URL (cached; fetched again
    once when the key is not there, as after a key rotation)."""
    data = _find(client.jwks, kid) if client.jwks else None
    if data is None and client.jwks_url:
        data = _find(_jwks_from_url(client.jwks_url, fresh=False), kid) or _find(
            _jwks_from_url(client.jwks_url, fresh=True), kid
        )
    if data is None:
        raise ClientAuthError(f"No public key {kid!r:.60} is registered for this EHR.", "key")
    if data.get("alg") and data["alg"] != algorithm:
        raise ClientAuthError(f"Key {kid!r:.60} is registered for {data['alg']!r:.20}, not {algorithm}.", "algorithm")
    try:
        return jwt.PyJWK.from_dict(data, algorithm=algorithm).key
    except jwt.PyJWTError as exc:
        raise ClientAuthError(f"The registered key {kid!r:.60} cannot verify {algorithm}: {exc}.", "key") from None


def _find(jwks: dict, kid: str) -> dict | None:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return next((k for k in keys or [] if isinstance(k, dict) and k.get("kid") == kid), None)


def _jwks_from_url(url: str, *, fresh: bool) -> dict:
    cache_key = f"cdshooks:jwks:{url}"
    if not fresh:
        cached = cache.get(cache_key)
        if cached is not None:
            return cached
    try:
        response = httpx.get(url, timeout=JWKS_TIMEOUT_SECONDS, headers={"Accept": "application/json"})
        response.raise_for_status()
        jwks = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ClientAuthError(f"The EHR's JWK Set could not be fetched from {url}: {exc}.", "jwks_url") from None
    if not isinstance(jwks, dict):
        raise ClientAuthError(f"{url} did not return a JWK Set.", "jwks_url")
    cache.set(cache_key, jwks, JWKS_CACHE_SECONDS)
    return jwks
