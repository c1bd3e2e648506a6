from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver

from audit.models import AuditAction
from audit.services import audit_record


@receiver(user_logged_in)
def record_sign_in(sender, request, user, **kwargs):
    membership = getattr(user, "membership", None)
    audit_record(AuditAction.SIGN_IN, actor=user, organisation_id=membership.organisation_id if membership else None)


@receiver(user_login_failed)
def record_failed_sign_in(sender, credentials, request=None, **kwargs):
    audit_record(AuditAction.SIGN_IN_FAILED, details={"username": str(credentials.get("username", ""))[:150]})
