from django.contrib import admin, messages
from django.contrib.auth import get_user_model

from api.models import ApiToken
from api.tokens import token_issue, token_revoke
from patients.admin import RefusalAuditMixin, curated_organisations
from patients.models import Role
from patients.roles import ROLE_RANK, own_role, role_rank


@admin.register(ApiToken)
class ApiTokenAdmin(RefusalAuditMixin, admin.ModelAdmin):
    """Tokens are issued here or with `issue_token`; the plain token is shown once, then only its digest is kept."""

    list_display = ("prefix", "name", "user", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("prefix", "name", "user__username")
    fields = ("user", "name", "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        allowed = curated_organisations(request)
        return queryset if allowed is None else queryset.filter(user__membership__organisation__in=allowed)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        allowed = curated_organisations(request)
        if db_field.name == "user" and allowed is not None:
            # A token acts with its account's role: nobody issues one for a role above their own.
            roles = [role for role in Role.values if ROLE_RANK[role] <= role_rank(own_role(request.user))]
            kwargs["queryset"] = get_user_model().objects.filter(
                membership__organisation__in=allowed, membership__role__in=roles, is_superuser=False
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        record, token = token_issue(username=obj.user.username, name=obj.name, created_by=request.user)
        obj.pk = record.pk
        self.message_user(
            request, f"New token for {obj.user} (copy it now, it is not shown again): {token}", messages.WARNING
        )

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        for token in queryset:
            token_revoke(token=token)
        self.message_user(request, "Revoked: they no longer authenticate.")
