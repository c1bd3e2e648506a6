from django.contrib import admin
from django.http import JsonResponse

from audit.models import AuditEvent
from audit.services import audit_bundle, audit_link
from patients.admin import RefusalAuditMixin, curated_organisations
from patients.models import Role


@admin.register(AuditEvent)
class AuditEventAdmin(RefusalAuditMixin, admin.ModelAdmin):
    """Admins browse and filter the trail; nobody adds, edits or deletes entries here."""

    list_display = ("at", "actor_name", "action", "surface", "object_type", "object_id", "request_id", "organisation")
    list_filter = ("action", "surface", "organisation")
    search_fields = ("actor_name", "object_id", "request_id")
    date_hierarchy = "at"
    readonly_fields = [f.name for f in AuditEvent._meta.fields]
    actions = ["export_fhir"]

    def _is_admin(self, request):
        membership = getattr(request.user, "membership", None)
        return request.user.is_superuser or (membership is not None and membership.role == Role.ADMIN)

    def has_module_permission(self, request):
        return self._is_admin(request)

    def has_view_permission(self, request, obj=None):
        return self._is_admin(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        audit_link()  # entries written in the last seconds, chained before they are listed
        return super().changelist_view(request, extra_context)

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        allowed = curated_organisations(request)
        return queryset if allowed is None else queryset.filter(organisation__in=allowed)

    @admin.action(description="Export the selected entries as FHIR AuditEvents")
    def export_fhir(self, request, queryset):
        response = JsonResponse(audit_bundle(queryset.order_by("id")), content_type="application/fhir+json")
        response["Content-Disposition"] = 'attachment; filename="audit-events.json"'
        return response
