"""A cached token record is dropped when what it vouches for changes: the token itself (revoked, edited, deleted),
its account (deactivated, deleted) or the account's membership (role or organisation changed, removed)."""

from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from api.models import ApiToken
from api.tokens import token_forget
from patients.models import Membership
from patients.signals import forget_now_and_on_commit, only_signed_in


@receiver([post_save, post_delete], sender=ApiToken)
def token_changed(sender, instance, **kwargs):
    forget_now_and_on_commit(token_forget, digests=[instance.digest])


@receiver([post_save, post_delete], sender=get_user_model())
def account_changed(sender, instance, update_fields=None, **kwargs):
    if not only_signed_in(update_fields):
        forget_now_and_on_commit(token_forget, user_id=instance.pk)


@receiver([post_save, post_delete], sender=Membership)
def membership_changed(sender, instance, **kwargs):
    forget_now_and_on_commit(token_forget, user_id=instance.user_id)
