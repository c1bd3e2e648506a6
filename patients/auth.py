"""Signing in and reading the signed-in account: Django's model backend, reading her membership and
organisation with the account in one query (every page asks for both), and keeping that account for
PMLM_ACCOUNT_CACHE_SECONDS between requests.

Building that query costs a signed-in page about as much as reading its patients. Changing the account
(its password, whether it is active, its membership or organisation) drops the kept copy at once
(`account_forget`, from `patients.signals`): in every process with a shared cache (PMLM_CACHE_URL), in the
process that made the change otherwise, where other processes read the change within the setting's seconds,
as they do for a partner token's record. Signing out ends the session itself, which is never kept here."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache


def _cache_key(user_id) -> str:
    return f"signed-in-account:{user_id}"


def account_forget(*user_ids) -> None:
    """Drop the kept copies of these accounts."""
    cache.delete_many([_cache_key(user_id) for user_id in user_ids])


class MemberBackend(ModelBackend):
    def get_user(self, user_id):
        seconds = settings.PMLM_ACCOUNT_CACHE_SECONDS
        user = cache.get(_cache_key(user_id)) if seconds else None
        if user is None:
            user = (
                get_user_model()._default_manager.select_related("membership__organisation").filter(pk=user_id).first()
            )
            if user is not None and seconds:
                cache.set(_cache_key(user_id), user, seconds)
        return user if user is not None and self.user_can_authenticate(user) else None
