"""Issuing, checking and revoking partner API tokens (the command, the admin and the API share these)."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.utils import timezone

from api.models import ApiToken

PREFIX = "pmlm"


class TokenError(ValueError):
    pass


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_issue(*, username: str, name: str = "", created_by=None) -> tuple[ApiToken, str]:
    """A new token for a member's account; the plain token is returned once and never stored."""
    user = get_user_model().objects.filter(username=username, is_active=True).select_related("membership").first()
    if user is None:
        raise TokenError(f"No active user {username!r}.")
    if getattr(user, "membership", None) is None:
        raise TokenError(f"{username} is not a member of any organisation: a token would reach nothing.")
    public = secrets.token_hex(4)
    token = f"{PREFIX}_{public}_{secrets.token_urlsafe(32)}"
    record = ApiToken.objects.create(
        user=user, name=name or "API token", prefix=f"{PREFIX}_{public}", digest=_digest(token), created_by=created_by
    )
    return record, token


def _cache_key(digest: str) -> str:
    return f"api-token:{digest}"


def token_authenticate(token: str) -> ApiToken | None:
    """The active token record for this token, or None; marks when it was last used.

    A valid token's record (with its account, membership and organisation) is kept in the cache for
    PMLM_TOKEN_CACHE_SECONDS. Revoking the token, or changing its account or membership, deletes it there at once
    (`token_forget`): with a shared cache (PMLM_CACHE_URL) in every process, with the per-process one in this one.
    An unknown token is never cached."""
    if not token or len(token) > 200:
        return None
    digest = _digest(token)
    record = cache.get(_cache_key(digest))
    looked_up = record is None
    if looked_up:
        record = (
            ApiToken.objects.filter(digest=digest, revoked_at__isnull=True, user__is_active=True)
            .select_related("user", "user__membership", "user__membership__organisation")
            .first()
        )
        if record is None:
            return None
    marked = record.last_used_at is None or (timezone.now() - record.last_used_at).total_seconds() > 60
    if marked:
        record.last_used_at = timezone.now()
        ApiToken.objects.filter(pk=record.pk).update(last_used_at=record.last_used_at)
    if looked_up or marked:
        cache.set(_cache_key(digest), record, settings.PMLM_TOKEN_CACHE_SECONDS)
    return record


def token_forget(*, user_id: int | None = None, digests=()) -> None:
    """Drop cached token records: these digests, or every token of this account."""
    if user_id is not None:
        digests = [*digests, *ApiToken.objects.filter(user_id=user_id).values_list("digest", flat=True)]
    cache.delete_many([_cache_key(digest) for digest in digests])


def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    token_forget(digests=[token.digest])
    return token
