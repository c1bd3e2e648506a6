from django.contrib import admin, messages
from simple_history.admin import SimpleHistoryAdmin

from patients.admin import CuratedAdmin, export_csv
from prompting.models import PeerModel, PeerProfile, PersonalizedPrompt, PromptTemplate
from prompting.services import peer_model_create, peer_model_queue


@admin.register(PromptTemplate)
class PromptTemplateAdmin(SimpleHistoryAdmin):
    """Curators edit templates; activating one deactivates the others."""

    list_display = ("version", "active", "token_budget", "created_at")
    list_filter = ("active",)
    search_fields = ("version", "instructions", "notes")
    actions = ["activate", export_csv]

    @admin.action(description="Make the selected template the active one")
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
    list_display = ("version", "organisation", "status", "progress", "active", "neighbour_method", "cohort_size", "training_seconds", "created_at")
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
