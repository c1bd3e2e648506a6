"""Signing in and reading the signed-in account: Django's model backend, reading her membership and
organisation with the account in one query (every page asks for both)."""

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend


class MemberBackend(ModelBackend):
    def get_user(self, user_id):
        user = get_user_model()._default_manager.select_related("membership__organisation").filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None
