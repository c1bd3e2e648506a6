"""A cached token record is dropped when what it vouches for changes: the token itself (revoked, edited, deleted),
its account (deactivated, deleted) or the account's membership (role or organisation changed, removed)."""

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from api.models import ApiToken
from api.tokens import token_forget
from patients.models import Membership


def _forget_after_commit(**kwargs) -> None:
    token_forget(**kwargs)  # now: this transaction's own later reads see it
    transaction.on_commit(lambda: token_forget(**kwargs))  # and again once committed: no reader re-caches the old


@receiver([post_save, post_delete], sender=ApiToken)
def token_changed(sender, instance, **kwargs):
    _forget_after_commit(digests=[instance.digest])


@receiver([post_save, post_delete], sender=get_user_model())
def account_changed(sender, instance, update_fields=None, **kwargs):
    if update_fields is not None and set(update_fields) <= {"last_login"}:
        return  # a sign-in stamps the time and changes nothing a token vouches for
    _forget_after_commit(user_id=instance.pk)


@receiver([post_save, post_delete], sender=Membership)
def membership_changed(sender, instance, **kwargs):
    _forget_after_commit(user_id=instance.user_id)
