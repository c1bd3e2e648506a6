"""Issuing, checking and revoking partner API tokens (the command, the admin and the API share these)."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib.auth import get_user_model
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


def token_authenticate(token: str) -> ApiToken | None:
    """The active token record for this token, or None; marks when it was last used."""
    if not token or len(token) > 200:
        return None
    record = (
        ApiToken.objects.filter(digest=_digest(token), revoked_at__isnull=True, user__is_active=True)
        .select_related("user", "user__membership", "user__membership__organisation")
        .first()
    )
    if record is not None and (
        record.last_used_at is None or (timezone.now() - record.last_used_at).total_seconds() > 60
    ):
        ApiToken.objects.filter(pk=record.pk).update(last_used_at=timezone.now())
    return record


def token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token
