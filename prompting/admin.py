from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from patients.admin import CuratedAdmin, SiteSettingsAdmin, export_csv
from prompting.errors import GuidanceError
from prompting.evaluation_runs import evaluation_run_cancel
from prompting.guidance import comparison_run_check, comparison_run_create
from prompting.knowledge import KnowledgeError, knowledge_document_save
from prompting.models import (
    ClinicianRating,
    ComparisonRun,
    EvaluationItem,
    EvaluationRun,
    GuidanceRequest,
    KnowledgeChunk,
    KnowledgeDocument,
    LLMEndpoint,
    PeerModel,
    PeerProfile,
    PersonalizedPrompt,
    PromptTemplate,
    RefinementRun,
)
from prompting.peer_models import peer_model_create, peer_model_queue
from prompting.refinement import RefinementError, refinement_run_cancel, refinement_run_promote


@admin.register(PromptTemplate)
class PromptTemplateAdmin(SiteSettingsAdmin):
    """One template serves every organisation: site administrators edit it; activating one deactivates the others."""

    list_display = ("version", "active", "token_budget", "sources_room", "created_at")
    list_filter = ("active",)
    search_fields = ("version", "instructions", "notes")
    actions = ["activate", export_csv]

    @admin.action(description="Make the selected template the active one", permissions=["change"])
    def activate(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one template to activate.", messages.ERROR)
            return
        template = queryset.get()
        PromptTemplate.objects.exclude(pk=template.pk).update(active=False)
        template.active = True
        template.save()
        self.message_user(request, f"{template.version} is now the active template.")


@admin.register(PeerModel)
class PeerModelAdmin(CuratedAdmin):
    list_display = (
        "version",
        "organisation",
        "status",
        "progress",
        "active",
        "neighbour_method",
        "cohort_size",
        "training_seconds",
        "created_at",
    )
    list_filter = ("status", "active", "organisation")
    readonly_fields = [f.name for f in PeerModel._meta.fields]
    actions = ["train_again", export_csv]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Train a new peer model for these organisations (in the background)")
    def train_again(self, request, queryset):
        for organisation in {m.organisation for m in queryset}:
            peer_model_queue(peer_model=peer_model_create(organisation=organisation, user=request.user))
        self.message_user(request, "Training queued: the list shows its progress.")


@admin.register(PeerProfile)
class PeerProfileAdmin(CuratedAdmin):
    organisation_path = "patient__organisation"
    list_display = ("patient", "peer_model", "basis")
    list_filter = ("basis", "peer_model")
    raw_id_fields = ("patient", "peer_model")
    search_fields = ("patient__external_id",)


@admin.register(PersonalizedPrompt)
class PersonalizedPromptAdmin(CuratedAdmin):
    organisation_path = "patient__organisation"
    list_display = ("created_at", "patient", "template_version", "peer_model_version", "token_count", "question")
    list_filter = ("template_version",)
    search_fields = ("question", "patient__external_id", "inputs_hash")
    readonly_fields = [f.name for f in PersonalizedPrompt._meta.fields]

    def has_add_permission(self, request):
        return False


@admin.register(LLMEndpoint)
class LLMEndpointAdmin(SiteSettingsAdmin):
    """The LLMs this deployment may send prompts to, and the default: site administrators choose them."""

    list_display = ("name", "kind", "openness", "may_receive_identifiable_data", "is_default", "active")
    list_filter = ("kind", "openness", "may_receive_identifiable_data", "active")
    search_fields = ("name", "notes")


class KnowledgeChunkInline(admin.TabularInline):
    model = KnowledgeChunk
    fields = ("ordinal", "text")
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(KnowledgeDocument)
class KnowledgeDocumentAdmin(SiteSettingsAdmin):
    """The guidance every organisation's retrieval reads. Site administrators upload text, Markdown or PDF;
    a worker chunks and embeds it, and retrieval sees it at once."""

    list_display = ("title", "source", "licence", "active", "chunk_count", "updated_at")
    list_filter = ("active", "licence")
    search_fields = ("title", "text", "source", "external_key")
    readonly_fields = ("external_key", "created_at", "updated_at")
    inlines = [KnowledgeChunkInline]
    actions = [export_csv]

    @admin.display(description="passages")
    def chunk_count(self, obj):
        return obj.chunks.count()

    def save_model(self, request, obj, form, change):
        upload = "upload" in form.changed_data and obj.upload
        try:
            knowledge_document_save(
                document=obj, file_name=obj.upload.name if upload else "", data=obj.upload.read() if upload else None
            )
        except KnowledgeError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, "Indexing in the background: the passages appear in a moment.")


@admin.register(GuidanceRequest)
class GuidanceRequestAdmin(CuratedAdmin):
    organisation_path = "patient__organisation"
    list_display = ("created_at", "patient", "endpoint", "use_retrieval", "status", "latency_ms", "model")
    list_filter = ("status", "endpoint", "use_retrieval")
    search_fields = ("question", "text", "patient__external_id")
    readonly_fields = [f.name for f in GuidanceRequest._meta.fields]

    def has_add_permission(self, request):
        return False


class ComparisonRunForm(forms.ModelForm):
    """The comparison's checks, as comparison_run_create makes them, shown on the form."""

    class Meta:
        model = ComparisonRun
        fields = ("organisation", "patient_ids", "questions", "endpoint_names")

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and not self.errors:  # a started comparison's fields are read-only
            try:
                data["endpoint_names"] = comparison_run_check(
                    organisation=data["organisation"],
                    patient_ids=data.get("patient_ids") or [],
                    questions=data.get("questions") or [],
                    endpoint_names=data.get("endpoint_names") or [],
                )
            except GuidanceError as exc:
                raise forms.ValidationError(str(exc)) from None
        return data


@admin.register(ComparisonRun)
class ComparisonRunAdmin(CuratedAdmin):
    """Start a comparison: patients (FHIR ids), questions and endpoints; a worker runs it."""

    list_display = ("created_at", "organisation", "status", "progress", "message")
    list_filter = ("status",)
    form = ComparisonRunForm
    fields = ("organisation", "patient_ids", "questions", "endpoint_names", "status", "progress", "message", "table")
    readonly_fields = ("status", "progress", "message", "table")

    def get_readonly_fields(self, request, obj=None):
        """A started comparison is a record of what ran: nothing of it changes afterwards."""
        return self.fields if obj is not None else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return
        run = comparison_run_create(
            organisation=obj.organisation,
            patient_ids=obj.patient_ids,
            questions=obj.questions,
            endpoint_names=obj.endpoint_names,
            user=request.user,
        )
        obj.pk, obj._state.adding = run.pk, False


@admin.register(RefinementRun)
class RefinementRunAdmin(CuratedAdmin):
    """Runs start from the refinement pages (or `refine_prompts`); here curators audit, promote and cancel."""

    list_display = (
        "version",
        "organisation",
        "status",
        "progress",
        "step",
        "reward_initial",
        "reward_refined",
        "target_calls",
        "promoted",
        "page",
        "created_at",
    )
    list_filter = ("status", "promoted", "organisation")
    readonly_fields = [f.name for f in RefinementRun._meta.fields]
    actions = ["promote", "cancel", export_csv]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Run page")
    def page(self, obj):
        return format_html('<a href="{}">open</a>', reverse("refinement:detail", args=[obj.pk]))

    @admin.action(description="Promote the selected run (guidance refines prompts with its policy)")
    def promote(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one run to promote.", messages.ERROR)
            return
        try:
            run = refinement_run_promote(run=queryset.get(), user=request.user)
        except RefinementError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"Run {run.version} is promoted.")

    @admin.action(description="Cancel the selected runs")
    def cancel(self, request, queryset):
        for run in queryset:
            refinement_run_cancel(run=run)
        self.message_user(request, "Cancellation requested: a running run stops after its current step.")


@admin.register(ClinicianRating)
class ClinicianRatingAdmin(CuratedAdmin):
    organisation_path = "guidance__patient__organisation"
    list_display = (
        "created_at",
        "guidance",
        "rater",
        "accuracy",
        "completeness",
        "personalisation",
        "safety",
        "clarity",
        "would_follow",
    )
    list_filter = ("would_follow",)
    raw_id_fields = ("guidance", "rater")


class EvaluationItemInline(admin.TabularInline):
    model = EvaluationItem
    fields = ("patient", "encounter_id", "variant", "use_retrieval", "endpoint_name", "closeness", "guidance")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False
    max_num = 0

    @admin.display(description="Closeness")
    def closeness(self, obj):
        return obj.metrics.get("closeness")


@admin.register(EvaluationRun)
class EvaluationRunAdmin(CuratedAdmin):
    """Evaluations start from the evaluation pages (or `evaluate`); here curators audit and cancel them."""

    list_display = ("pk", "organisation", "status", "progress", "examples", "patients", "page", "created_at")
    list_filter = ("status", "organisation")
    readonly_fields = [f.name for f in EvaluationRun._meta.fields]
    inlines = [EvaluationItemInline]
    actions = ["cancel", export_csv]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Evaluation page")
    def page(self, obj):
        return format_html('<a href="{}">open</a>', reverse("evaluations:detail", args=[obj.pk]))

    @admin.action(description="Cancel the selected evaluations")
    def cancel(self, request, queryset):
        for run in queryset:
            evaluation_run_cancel(run=run)
        self.message_user(request, "Cancellation requested: a running evaluation stops after its current answer.")
