"""Who may give whom which role, and who may change the settings every organisation shares.

Roles rank partner and clinician below curator, and curator below admin. Nobody raises their own
role; nobody grants a role above their own, or edits the membership of someone who ranks above
them. Settings that belong to no organisation (LLM endpoints, prompt templates, knowledge
documents, the care-item catalogue, the organisations themselves) are changed only by a site
administrator: a superuser, or an account holding `patients.manage_site_settings` (the "Site
administrators" group). Every role given or changed is recorded in the audit trail.
"""

from __future__ import annotations

from django.db import transaction

from audit.models import AuditAction
from audit.services import audit_record
from patients.models import Membership, Role

ROLE_RANK = {Role.PARTNER: 1, Role.CLINICIAN: 1, Role.CURATOR: 2, Role.ADMIN: 3}
SITE_ADMIN_GROUP = "Site administrators"
SITE_SETTINGS_PERMISSION = "patients.manage_site_settings"


def is_site_admin(user) -> bool:
    return bool(user and user.is_active and (user.is_superuser or user.has_perm(SITE_SETTINGS_PERMISSION)))


def role_rank(role: str | None) -> int:
    return ROLE_RANK.get(role, 0)


def own_role(user) -> str | None:
    """The role stored for this account now (not a cached copy a form may be editing)."""
    return Membership.objects.filter(user_id=user.pk).values_list("role", flat=True).first()


def role_change_refusal(*, actor, membership_pk: int | None, user_id: int | None, role: str) -> str | None:
    """Why `actor` may not save the membership `membership_pk` (None: a new one) of account `user_id`
    with `role`; None when they may."""
    if actor.is_superuser:
        return None
    mine = own_role(actor)
    if mine is None:
        return "Your account is not a member of any organisation."
    before = (
        Membership.objects.filter(pk=membership_pk).values_list("role", "user_id").first() if membership_pk else None
    )
    if before is not None and role_rank(before[0]) > role_rank(mine):
        return "You may not change the membership of someone whose role is above yours."
    if role_rank(role) > role_rank(mine):
        if user_id == actor.pk or (before is not None and before[1] == actor.pk):
            return "Nobody may raise their own role."
        return f"You may not grant a role above your own ({Role(mine).label})."
    return None


def membership_role_record(*, membership: Membership, before: str | None, actor=None):
    """Audit a role given (before is None) or changed; nothing when the role stayed the same."""
    if before == membership.role:
        return
    with transaction.atomic():
        audit_record(
            AuditAction.ROLE_CHANGE,
            obj=membership,
            actor=actor,
            organisation_id=membership.organisation_id,
            details={"user": membership.user_id, "from": before or "", "to": membership.role},
        )


# (app label, model) of the settings every organisation shares, and what only site administrators may do to them.
SITE_SETTINGS_MODELS = (
    ("patients", "careitem"),
    ("prompting", "llmendpoint"),
    ("prompting", "prompttemplate"),
    ("prompting", "knowledgedocument"),
)
SITE_ONLY_CODENAMES = [
    ("patients", "manage_site_settings"),
    ("patients", "add_organisation"),
    ("patients", "delete_organisation"),
] + [(app, f"{verb}_{model}") for app, model in SITE_SETTINGS_MODELS for verb in ("add", "change", "delete")]


def site_only_permissions(permission_model):
    """The permissions a curator's group must not hold (a query over `permission_model`, real or historical)."""
    from django.db.models import Q

    query = Q(pk__in=[])
    for app, codename in SITE_ONLY_CODENAMES:
        query |= Q(content_type__app_label=app, codename=codename)
    return permission_model.objects.filter(query)
