"""What the partner API reads and writes. Patients are addressed by their FHIR id, never by database keys."""

from datetime import timezone as dt_timezone

from django.utils import timezone
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from patients.models import Patient
from patients.selectors import patient_pregnancy
from prompting.guidance import guidance_as_json
from prompting.models import RATING_SCALES, ClinicianRating, GuidanceRequest, PeerModel, RefinementRun
from prompting.prompts import MAX_QUESTION_CHARS, PromptError, consultation_date_check, consultation_year_pattern

# Request fields take only their JSON type: DRF would otherwise read 0 as the question "0", "yes" as
# true and "5" as 5, none of which the schema allows.
# Blank is only white space, as the schema's regular expressions (ECMA \s) and Python's str.strip() count it.
BLANK = (
    " \t\n\v\f\r\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not self.allow_blank and not value.strip(BLANK):
            self.fail("blank")
        return value


class StrictCharFieldSchema(OpenApiSerializerFieldExtension):
    """Text fields say in the schema that they take no NUL (DRF refuses one with 400; so would the database), and
    a required one that it needs more than white space."""

    target_class = StrictCharField

    def map_serializer_field(self, auto_schema, direction):
        schema = auto_schema._map_serializer_field(self.target, direction, bypass_extensions=True)
        if self.target.allow_blank:  # a blank one is the schema's other alternative
            return {**schema, "pattern": r"^[^\x00]+$"}
        return {**schema, "pattern": r"^[^\x00]*[^\s\x00\x1c-\x1f\x85][^\x00]*$"}


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class ConsultationDateField(serializers.DateField):
    """An ISO date string in the range a consultation can be read at."""

    def to_internal_value(self, value):
        if not isinstance(value, str):
            self.fail("invalid", format="YYYY-MM-DD")
        parsed = super().to_internal_value(value)
        try:
            return consultation_date_check(parsed)
        except PromptError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ConsultationDateSchema(OpenApiSerializerFieldExtension):
    """The schema says which years are accepted, so a client (and schemathesis) knows before asking."""

    target_class = ConsultationDateField

    def map_serializer_field(self, auto_schema, direction):
        return {"type": "string", "format": "date", "pattern": consultation_year_pattern()}


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
        fields = [
            "id",
            "given_names",
            "family_name",
            "birth_date",
            "gender",
            "deceased_at",
            "language",
            "pregnant",
            "pregnancy_start",
            "pregnancy_end",
            "last_encounter_at",
            "updated_at",
        ]

    def get_pregnant(self, patient) -> bool:
        return patient_pregnancy(patient, timezone.now().date()).pregnant

    def to_representation(self, patient):
        """The declared fields as DRF writes them (tests compare the two), in one pass: a list page of 50 patients
        otherwise spends most of its time in DRF's per-field machinery."""
        return {
            "id": patient.external_id,
            "given_names": patient.given_names,
            "family_name": patient.family_name,
            "birth_date": _date(patient.birth_date),
            "gender": patient.gender,
            "deceased_at": _datetime(patient.deceased_at),
            "language": patient.language,
            "pregnant": self.get_pregnant(patient),
            "pregnancy_start": _date(patient.pregnancy_start),
            "pregnancy_end": _date(patient.pregnancy_end),
            "last_encounter_at": _datetime(patient.last_encounter_at),
            "updated_at": _datetime(patient.updated_at),
        }


def _date(value):
    return None if value is None else value.isoformat()


def _datetime(value):
    """ISO 8601 in UTC with a Z, as DRF writes it under TIME_ZONE = "UTC" (without its per-value time-zone lookup)."""
    if value is None:
        return None
    text = value.astimezone(dt_timezone.utc).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class QuestionSerializer(serializers.Serializer):
    question = StrictCharField(max_length=MAX_QUESTION_CHARS, trim_whitespace=True)
    at = ConsultationDateField(
        required=False,
        allow_null=True,
        help_text=(
            "Consultation date (default today), from 1900-01-01 to the end of next year: the record is read as of it."
        ),
    )


class GuidanceCreateSerializer(QuestionSerializer):
    endpoint = StrictCharField(
        required=False, allow_blank=True, max_length=50, help_text="Endpoint name (default: the default one)."
    )
    use_retrieval = StrictBooleanField(required=False, default=True)


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
    """Guidance, read only: its JSON is prompting.guidance.guidance_as_json (the one shape `ask --json` prints too);
    the fields here document it for the schema."""

    patient = serializers.CharField(source="patient.external_id")
    endpoint = serializers.CharField(source="endpoint.name")
    prompt = serializers.CharField(
        help_text="The prompt the LLM was sent: the refined one when the policy's edit was used."
    )
    initial_prompt = serializers.CharField()
    refined = serializers.BooleanField()
    refinement = serializers.DictField(
        help_text=(
            "What the promoted refinement run did to the prompt (empty when none is promoted): run, version, edit, "
            "label, used, and the guard's problems when its edit was not used."
        )
    )
    guidance = serializers.CharField(source="text")
    citations = CitationSerializer(many=True)
    warnings = serializers.ListField(child=serializers.DictField())
    unsupported_claims = serializers.ListField(
        child=serializers.DictField(),
        help_text=(
            "Sentences of the guidance that assert about her what her record does not support: sentence, start, end "
            "(offsets into the guidance), reason, kinds (finding, number, medicine)."
        ),
    )
    usage = serializers.DictField()
    notice = serializers.CharField()

    class Meta:
        model = GuidanceRequest
        fields = [
            "id",
            "patient",
            "question",
            "consultation_date",
            "status",
            "endpoint",
            "use_retrieval",
            "backend",
            "model",
            "prompt",
            "initial_prompt",
            "refined",
            "refinement",
            "guidance",
            "citations",
            "warnings",
            "unsupported_claims",
            "usage",
            "latency_ms",
            "error",
            "notice",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def to_representation(self, instance) -> dict:
        return guidance_as_json(instance)


class RatingSerializer(serializers.ModelSerializer):
    rater = serializers.CharField(source="rater.username", read_only=True)
    accuracy = StrictIntegerField(min_value=1, max_value=5)
    completeness = StrictIntegerField(min_value=1, max_value=5)
    personalisation = StrictIntegerField(min_value=1, max_value=5)
    safety = StrictIntegerField(min_value=1, max_value=5)
    clarity = StrictIntegerField(min_value=1, max_value=5)
    would_follow = StrictBooleanField(required=False, allow_null=True)
    comment = StrictCharField(required=False, allow_blank=True, max_length=4000)

    class Meta:
        model = ClinicianRating
        fields = ["id", "rater", *RATING_SCALES, "would_follow", "comment", "created_at"]
        read_only_fields = ["id", "rater", "created_at"]


class PeerModelSerializer(serializers.ModelSerializer):
    class Meta:
        model = PeerModel
        fields = [
            "version",
            "status",
            "progress",
            "message",
            "active",
            "neighbour_method",
            "cohort_size",
            "metrics",
            "training_seconds",
            "created_at",
            "finished_at",
        ]


class RefinementRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = RefinementRun
        fields = [
            "version",
            "status",
            "progress",
            "message",
            "step",
            "curve",
            "reward_initial",
            "reward_refined",
            "accepted_share",
            "seconds_per_step",
            "target_calls",
            "report",
            "promoted",
            "created_at",
            "finished_at",
        ]


class ImportResultSerializer(serializers.Serializer):
    status = serializers.CharField()
    patients = serializers.ListField(child=serializers.CharField())
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
