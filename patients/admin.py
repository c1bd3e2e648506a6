"""Data curation in the Django admin: search, filters, inlines, CSV export and change history.

Curators only see and edit the organisations they belong to; superusers see everything.
"""

import csv

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, StreamingHttpResponse
from simple_history.admin import SimpleHistoryAdmin

from audit.models import AuditAction
from audit.services import audit_denied, audit_record
from patients import models as m
from patients.roles import ROLE_RANK, is_site_admin, membership_role_record, own_role, role_change_refusal, role_rank
from patients.services import import_job_queue


class _Echo:
    def write(self, value):
        return value


@admin.action(description="Export selected rows as CSV")
def export_csv(modeladmin, request, queryset):
    fields = [f for f in queryset.model._meta.concrete_fields]
    writer = csv.writer(_Echo())

    def rows():
        yield writer.writerow([f.name for f in fields])
        for obj in queryset.iterator(chunk_size=2000):
            yield writer.writerow([_csv_value(getattr(obj, f.attname)) for f in fields])

    audit_record(AuditAction.EXPORT_CSV, object_type=queryset.model._meta.label, details={"rows": queryset.count()})
    response = StreamingHttpResponse(rows(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{queryset.model._meta.model_name}.csv"'
    return response


def _csv_value(value):
    text = "" if value is None else str(value)
    # Neutralise spreadsheet formulas (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def curated_organisations(request):
    """The organisations this admin user curates (None: all, for superusers)."""
    if request.user.is_superuser:
        return None
    membership = getattr(request.user, "membership", None)
    return [membership.organisation_id] if membership else []


def _has_simple_history(model) -> bool:
    return hasattr(model._meta, "simple_history_manager_attribute")


class RefusalAuditMixin:
    """Audits every attempt, through an admin, on an object outside the curator's organisations.

    The admin already looks objects up through `get_queryset` (scoped to those organisations), so such
    an object is simply not found; this records that someone asked for it."""

    def _refuse(self, request, object_id):
        exists = False
        try:
            exists = self.model._default_manager.filter(pk=object_id).exists()
        except (ValueError, TypeError, ValidationError):
            pass
        audit_denied(
            object_type=self.model._meta.label,
            object_id=object_id,
            reason="admin: not in your organisation" if exists else "admin: no such object",
        )

    def _refuse_unless_visible(self, request, object_id) -> bool:
        if self.get_object(request, unquote(object_id)) is None:
            self._refuse(request, unquote(object_id))
            return False
        return True

    def changelist_view(self, request, extra_context=None):
        if request.method == "POST" and request.POST.get("action"):
            for object_id in request.POST.getlist(helpers.ACTION_CHECKBOX_NAME):
                self._refuse_unless_visible(request, object_id)
        return super().changelist_view(request, extra_context)

    def _audit_view(self, request, object_id):
        """Record a permitted look at one object (the curated admins do; others record nothing)."""

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if self._refuse_unless_visible(request, object_id) and request.method == "GET":
            self._audit_view(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._refuse_unless_visible(request, object_id)
        return super().delete_view(request, object_id, extra_context)


class CuratedAdmin(RefusalAuditMixin, SimpleHistoryAdmin):
    """History, CSV export and organisation scoping for every model of the record.

    Every view that takes an object id (change, delete, history, a history version and its revert)
    and every action looks the object up through `get_queryset`, which holds only the curator's
    organisations; anything else is refused and the refusal is audited.
    """

    actions = [export_csv]
    list_per_page = 50
    organisation_path = "organisation"

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        return self._scoped(request, queryset, self.organisation_path)

    @staticmethod
    def _scoped(request, queryset, path):
        allowed = curated_organisations(request)
        if allowed is None or path is None:
            return queryset
        return queryset.filter(**{f"{path}__in": allowed})

    # Every read and write of the record through the admin goes into the audit trail.
    def changelist_view(self, request, extra_context=None):
        audit_record(AuditAction.ADMIN_VIEW, object_type=self.model._meta.label, details={"list": True})
        return super().changelist_view(request, extra_context)

    def _audit_view(self, request, object_id):
        audit_record(AuditAction.ADMIN_VIEW, object_type=self.model._meta.label, object_id=object_id)

    def _history_visible(self, request, object_id) -> bool:
        """The object is the curator's, or it was deleted and its history is the curator's."""
        if self.get_object(request, object_id) is not None:
            return True
        try:
            if self.model._default_manager.filter(pk=object_id).exists():
                return False  # it exists, in another organisation
            history = getattr(self.model, self.model._meta.simple_history_manager_attribute)
            path = self.model._meta.pk.attname if self.organisation_path == "pk" else self.organisation_path
            return self._scoped(request, history.filter(**{self.model._meta.pk.attname: object_id}), path).exists()
        except (ValueError, TypeError, ValidationError):
            return False

    def history_view(self, request, object_id, extra_context=None):
        if not _has_simple_history(self.model):
            # Rows nobody edits (guidance, prompts, runs) keep no field history: the admin's own
            # log of who did what to them, looked up through the scoped queryset.
            return admin.ModelAdmin.history_view(self, request, object_id, extra_context)
        if not self._history_visible(request, unquote(object_id)):
            self._refuse(request, unquote(object_id))
            raise Http404("No such object in your organisation.")
        audit_record(
            AuditAction.ADMIN_VIEW,
            object_type=self.model._meta.label,
            object_id=unquote(object_id),
            details={"history": True},
        )
        return super().history_view(request, object_id, extra_context)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        object_id = unquote(object_id)
        if not _has_simple_history(self.model) or not self._history_visible(request, object_id):
            self._refuse(request, object_id)
            raise Http404("No such object in your organisation.")
        if request.method == "POST":
            current = self.get_object(request, object_id)
            allowed = (
                self.has_change_permission(request, current)
                if current is not None
                else self.has_add_permission(request)
            )
            if not allowed:  # the history page itself does not check this before reverting
                raise PermissionDenied
        else:
            audit_record(
                AuditAction.ADMIN_VIEW,
                object_type=self.model._meta.label,
                object_id=object_id,
                details={"history_version": str(version_id)[:20]},
            )
        return super().history_form_view(request, object_id, version_id, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(
            AuditAction.ADMIN_CHANGE,
            obj=obj,
            details={"created": not change, "fields": sorted(form.changed_data) if form else []},
        )

    def delete_model(self, request, obj):
        audit_record(AuditAction.ADMIN_DELETE, obj=obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            audit_record(AuditAction.ADMIN_DELETE, obj=obj)
        super().delete_queryset(request, queryset)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        allowed = curated_organisations(request)
        if allowed is not None:
            related = db_field.related_model
            if related is m.Organisation:
                kwargs["queryset"] = m.Organisation.objects.filter(pk__in=allowed)
            elif related is m.Patient:
                kwargs["queryset"] = m.Patient.objects.filter(organisation__in=allowed)
            elif related is m.Encounter:
                kwargs["queryset"] = m.Encounter.objects.filter(organisation__in=allowed)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class SiteSettingsAdmin(SimpleHistoryAdmin):
    """Settings every organisation shares: curators may look, only site administrators change them."""

    def has_add_permission(self, request):
        return is_site_admin(request.user) and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return is_site_admin(request.user) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return is_site_admin(request.user) and super().has_delete_permission(request, obj)

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        if request.method == "POST" and not self.has_change_permission(request):
            raise PermissionDenied  # the history page itself does not check this before reverting
        return super().history_form_view(request, object_id, version_id, extra_context)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        audit_record(
            AuditAction.ADMIN_CHANGE,
            obj=obj,
            details={"created": not change, "site_setting": True, "fields": sorted(form.changed_data) if form else []},
        )

    def delete_model(self, request, obj):
        audit_record(AuditAction.ADMIN_DELETE, obj=obj, details={"site_setting": True})
        super().delete_model(request, obj)


class ClinicalRecordAdmin(CuratedAdmin):
    readonly_fields = ("fhir_id", "created_at", "updated_at")
    raw_id_fields = ("patient",)
    list_select_related = ("patient",)
    search_fields = ("fhir_id", "code", "display", "patient__external_id", "patient__family_name")

    def get_readonly_fields(self, request, obj=None):
        # The FHIR id is what re-imports match on: it may be set once, never changed.
        return self.readonly_fields if obj is not None else ("created_at", "updated_at")


@admin.register(m.Organisation)
class OrganisationAdmin(CuratedAdmin):
    """Curators rename their own organisation; only site administrators add or remove organisations."""

    organisation_path = "pk"
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def has_add_permission(self, request):
        return is_site_admin(request.user) and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None):
        return is_site_admin(request.user) and super().has_delete_permission(request, obj)


class MembershipForm(forms.ModelForm):
    """Refuses a role its editor may not give (the change page and a history revert both use it)."""

    actor = None  # the signed-in editor, set per request by MembershipAdmin.get_form

    class Meta:
        model = m.Membership
        fields = "__all__"

    def clean(self):
        data = super().clean()
        user, role = data.get("user"), data.get("role")
        if role and self.actor is not None:
            refusal = role_change_refusal(
                actor=self.actor,
                membership_pk=self.instance.pk,
                user_id=user.pk if user else self.instance.user_id,
                role=role,
            )
            if refusal:
                raise ValidationError({"role": refusal})
        return data


@admin.register(m.Membership)
class MembershipAdmin(CuratedAdmin):
    form = MembershipForm
    list_display = ("user", "organisation", "role", "created_at")
    list_filter = ("role", "organisation")
    search_fields = ("user__username", "user__email", "organisation__name")
    raw_id_fields = ("user",)

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        return type(form.__name__, (form,), {"actor": request.user})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        allowed = curated_organisations(request)
        if db_field.name == "user" and allowed is not None:
            # Accounts of the curator's organisations, or accounts nobody has taken on yet.
            users = get_user_model().objects.filter(is_superuser=False)
            kwargs["queryset"] = (
                users.filter(membership__organisation__in=allowed) | users.filter(membership__isnull=True)
            ).distinct()
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_choice_field(self, db_field, request, **kwargs):
        if db_field.name == "role" and not request.user.is_superuser:
            ceiling = role_rank(own_role(request.user))
            kwargs["choices"] = [(value, label) for value, label in m.Role.choices if ROLE_RANK[value] <= ceiling]
        return super().formfield_for_choice_field(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        outranks = (
            obj is not None
            and not request.user.is_superuser
            and role_rank(obj.role) > role_rank(own_role(request.user))
        )
        return not outranks and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        before = m.Membership.objects.filter(pk=obj.pk).values_list("role", flat=True).first() if obj.pk else None
        super().save_model(request, obj, form, change)
        membership_role_record(membership=obj, before=before, actor=request.user)


class EncounterInline(admin.TabularInline):
    model = m.Encounter
    fields = ("period_start", "display", "status", "fhir_id")
    readonly_fields = fields
    extra = 0
    show_change_link = True
    ordering = ("-period_start",)
    max_num = 0
    can_delete = False


@admin.register(m.Patient)
class PatientAdmin(CuratedAdmin):
    list_display = (
        "family_name",
        "given_names",
        "birth_date",
        "external_id",
        "organisation",
        "pregnancy_start",
        "last_encounter_at",
    )
    list_filter = ("organisation", "gender", ("pregnancy_start", admin.EmptyFieldListFilter))
    search_fields = ("family_name", "given_names", "external_id")
    readonly_fields = (
        "external_id",
        "pregnancy_start",
        "pregnancy_end",
        "last_encounter_at",
        "created_at",
        "updated_at",
    )
    inlines = [EncounterInline]
    date_hierarchy = "last_encounter_at"

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj is not None else self.readonly_fields[1:]


class ObservationInline(admin.TabularInline):
    model = m.Observation
    fields = ("code", "display", "value_quantity", "value_unit", "value_display", "effective_at", "fhir_id")
    readonly_fields = ("fhir_id",)
    raw_id_fields = ("patient",)
    extra = 0
    ordering = ("code",)


@admin.register(m.Encounter)
class EncounterAdmin(ClinicalRecordAdmin):
    list_display = ("period_start", "display", "status", "patient", "fhir_id")
    list_filter = ("status", "class_code", "code")
    date_hierarchy = "period_start"
    inlines = [ObservationInline]


@admin.register(m.Observation)
class ObservationAdmin(ClinicalRecordAdmin):
    list_display = ("effective_at", "code", "display", "value_text", "patient")
    list_filter = ("category", "status", "code_system")
    raw_id_fields = ("patient", "encounter")
    date_hierarchy = "effective_at"


@admin.register(m.Condition)
class ConditionAdmin(ClinicalRecordAdmin):
    list_display = ("display", "code", "clinical_status", "onset_at", "abatement_at", "patient")
    list_filter = ("clinical_status", "verification_status")
    raw_id_fields = ("patient", "encounter")


@admin.register(m.MedicationRequest)
class MedicationRequestAdmin(ClinicalRecordAdmin):
    list_display = ("display", "code", "status", "intent", "authored_at", "patient")
    list_filter = ("status", "intent")
    raw_id_fields = ("patient", "encounter")


@admin.register(m.MedicationStatement)
class MedicationStatementAdmin(ClinicalRecordAdmin):
    list_display = ("display", "code", "status", "effective_start", "patient")
    list_filter = ("status",)


@admin.register(m.AllergyIntolerance)
class AllergyIntoleranceAdmin(ClinicalRecordAdmin):
    list_display = ("display", "code", "criticality", "clinical_status", "patient")
    list_filter = ("criticality", "clinical_status", "allergy_type")


@admin.register(m.Procedure)
class ProcedureAdmin(ClinicalRecordAdmin):
    list_display = ("display", "code", "status", "performed_start", "patient")
    list_filter = ("status",)
    raw_id_fields = ("patient", "encounter")


@admin.register(m.Immunization)
class ImmunizationAdmin(ClinicalRecordAdmin):
    list_display = ("display", "code", "status", "occurred_at", "patient")
    list_filter = ("status",)
    raw_id_fields = ("patient", "encounter")


@admin.register(m.CarePlan)
class CarePlanAdmin(ClinicalRecordAdmin):
    list_display = ("display", "status", "intent", "period_start", "patient")
    list_filter = ("status", "intent")
    raw_id_fields = ("patient", "encounter")


@admin.register(m.LifestyleRecord)
class LifestyleRecordAdmin(CuratedAdmin):
    organisation_path = "patient__organisation"
    list_display = ("recorded_at", "kind", "value", "quantity", "unit", "source", "patient")
    list_filter = ("kind", "source")
    search_fields = ("value", "patient__external_id", "patient__family_name")
    raw_id_fields = ("patient",)
    date_hierarchy = "recorded_at"


@admin.register(m.CareItem)
class CareItemAdmin(SiteSettingsAdmin):
    """The catalogue is shared by every organisation."""

    actions = [export_csv]
    list_display = ("name", "slug", "category", "active")
    list_filter = ("category", "active")
    search_fields = ("name", "slug", "description")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(m.CareRating)
class CareRatingAdmin(CuratedAdmin):
    organisation_path = "patient__organisation"
    list_display = ("rated_on", "care_item", "rating", "source", "patient")
    list_filter = ("care_item", "rating", "source")
    search_fields = ("care_item__name", "patient__external_id", "patient__family_name")
    raw_id_fields = ("patient",)


@admin.register(m.PhysicianRecommendation)
class PhysicianRecommendationAdmin(CuratedAdmin):
    organisation_path = "patient__organisation"
    list_display = ("written_at", "author", "source", "patient")
    list_filter = ("source",)
    search_fields = ("text", "author", "patient__external_id", "patient__family_name")
    raw_id_fields = ("patient", "encounter")
    date_hierarchy = "written_at"


@admin.register(m.BundleImport)
class BundleImportAdmin(CuratedAdmin):
    list_display = ("started_at", "source", "status", "duration_ms", "organisation")
    list_filter = ("status", "organisation")
    search_fields = ("source", "error")
    readonly_fields = [f.name for f in m.BundleImport._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(m.ImportJob)
class ImportJobAdmin(CuratedAdmin):
    """Upload a bundle; a Celery worker imports it and the row shows the outcome."""

    list_display = ("created_at", "upload", "status", "progress", "message", "organisation")
    list_filter = ("status", "organisation")
    fields = ("organisation", "upload", "status", "progress", "message", "bundle_import", "created_by", "finished_at")
    readonly_fields = ("status", "progress", "message", "bundle_import", "created_by", "finished_at")

    def has_change_permission(self, request, obj=None):
        return obj is None and super().has_change_permission(request, obj)

    def save_model(self, request, obj, form, change):
        obj.created_by = request.user
        super().save_model(request, obj, form, change)
        if not change:
            import_job_queue(job=obj)
