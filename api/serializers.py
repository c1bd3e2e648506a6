"""What the partner API reads and writes. Patients are addressed by their FHIR id, never by database keys."""

from rest_framework import serializers

from patients.models import Patient
from prompting.models import ClinicianRating, GuidanceRequest, PeerModel, RefinementRun
from prompting.services import MAX_QUESTION_CHARS


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField()
    message = serializers.CharField()
    fields = serializers.DictField(child=serializers.ListField(child=serializers.CharField()), required=False)


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


class OperationOutcomeIssueSerializer(serializers.Serializer):
    severity = serializers.CharField()
    code = serializers.CharField()
    diagnostics = serializers.CharField()
    expression = serializers.ListField(child=serializers.CharField(), required=False)
    details = serializers.DictField(required=False)


class FhirErrorSerializer(ErrorSerializer):
    resourceType = serializers.CharField()
    issue = OperationOutcomeIssueSerializer(many=True)


class PatientSerializer(serializers.ModelSerializer):
    id = serializers.CharField(source="external_id", help_text="FHIR Patient.id as imported.")
    pregnant = serializers.SerializerMethodField()

    class Meta:
        model = Patient
        fields = ["id", "given_names", "family_name", "birth_date", "gender", "deceased_at", "language", "pregnant",
                  "pregnancy_start", "pregnancy_end", "last_encounter_at", "updated_at"]

    def get_pregnant(self, patient) -> bool:
        from django.utils import timezone

        from patients.selectors import patient_pregnancy

        return patient_pregnancy(patient, timezone.now().date()).pregnant


class QuestionSerializer(serializers.Serializer):
    question = serializers.CharField(max_length=MAX_QUESTION_CHARS, trim_whitespace=True)
    at = serializers.DateField(required=False, allow_null=True, help_text="Consultation date (default today): the record is read as of it.")


class GuidanceCreateSerializer(QuestionSerializer):
    endpoint = serializers.CharField(required=False, allow_blank=True, max_length=50, help_text="Endpoint name (default: the default one).")
    use_retrieval = serializers.BooleanField(required=False, default=True)


class PromptSectionSerializer(serializers.Serializer):
    source = serializers.ChoiceField(choices=["instructions", "self", "peer", "knowledge", "question"])
    title = serializers.CharField()
    text = serializers.CharField()


class RiskFlagSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField()
    evidence = serializers.CharField()


class PeerSerializer(serializers.Serializer):
    similarity = serializers.FloatField()
    basis = serializers.ChoiceField(choices=["ratings", "features"])


class PromptSerializer(serializers.Serializer):
    """Exactly what `build_prompt --json` prints."""

    patient = serializers.CharField()
    template_version = serializers.CharField()
    prompt = serializers.CharField()
    deidentified = serializers.BooleanField()
    sections = PromptSectionSerializer(many=True)
    risk_flags = RiskFlagSerializer(many=True)
    peers = PeerSerializer(many=True)


class CitationSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    title = serializers.CharField()
    source = serializers.CharField(allow_blank=True)
    excerpt = serializers.CharField()
    score = serializers.FloatField()
    cited_in_text = serializers.BooleanField()


class GuidanceSerializer(serializers.ModelSerializer):
    patient = serializers.CharField(source="patient.external_id")
    endpoint = serializers.CharField(source="endpoint.name")
    prompt = serializers.SerializerMethodField()
    initial_prompt = serializers.SerializerMethodField()
    refined = serializers.SerializerMethodField()
    guidance = serializers.CharField(source="text")
    citations = serializers.SerializerMethodField()
    warnings = serializers.ListField(child=serializers.DictField())
    usage = serializers.DictField()
    notice = serializers.SerializerMethodField()

    class Meta:
        model = GuidanceRequest
        fields = ["id", "patient", "question", "consultation_date", "status", "endpoint", "use_retrieval", "backend", "model",
                  "prompt", "initial_prompt", "refined", "guidance", "citations", "warnings", "usage", "latency_ms", "error",
                  "notice", "created_at", "finished_at"]

    def get_prompt(self, guidance) -> str:
        sent = guidance.refined_prompt or guidance.prompt
        return sent.text if sent else ""

    def get_initial_prompt(self, guidance) -> str:
        return guidance.prompt.text if guidance.prompt else ""

    def get_refined(self, guidance) -> bool:
        return guidance.refined_prompt_id is not None

    def get_citations(self, guidance) -> list[dict]:
        keep = ("n", "title", "source", "excerpt", "score", "cited_in_text")
        return CitationSerializer([{k: c.get(k) for k in keep} for c in guidance.citations], many=True).data

    def get_notice(self, guidance) -> str:
        from prompting.pmlm.safety import NOTICE

        return NOTICE


class RatingSerializer(serializers.ModelSerializer):
    rater = serializers.CharField(source="rater.username", read_only=True)

    class Meta:
        model = ClinicianRating
        fields = ["id", "rater", "accuracy", "completeness", "personalisation", "safety", "clarity", "would_follow", "comment",
                  "created_at"]
        read_only_fields = ["id", "rater", "created_at"]
        extra_kwargs = {"comment": {"max_length": 4000, "required": False}}


class PeerModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = PeerModel
        fields = ["version", "status", "progress", "message", "active", "neighbour_method", "cohort_size", "metrics",
                  "training_seconds", "created_at", "finished_at"]


class RefinementRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = RefinementRun
        fields = ["version", "status", "progress", "message", "step", "curve", "reward_initial", "reward_refined",
                  "accepted_share", "seconds_per_step", "promoted", "created_at", "finished_at"]


class ImportResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    patients = serializers.ListField(child=serializers.CharField())
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
