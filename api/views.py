"""Partner API v1. Thin views over the same services the pages and commands use; every object is
looked up inside the caller's organisation, so another organisation's patient is simply not found."""

import re

from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound, PermissionDenied, Throttled, ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from api.errors import Conflict, error_body, fhir_error_response
from api.parsers import FhirJSONAsJSONParser, FhirJSONParser
from api.serializers import (
    ErrorSerializer,
    FhirErrorSerializer,
    GuidanceCreateSerializer,
    GuidanceSerializer,
    ImportResultSerializer,
    PatientSerializer,
    PeerModelSerializer,
    PromptSerializer,
    QuestionSerializer,
    RatingSerializer,
    RefinementRunSerializer,
)
from audit.models import AuditAction
from audit.services import AuditContext, audit_denied, audit_record, audit_recorded_while, reset_context, set_context
from patients.fhir.export import patient_bundle
from patients.fhir.parse import SUPPORTED_BUNDLE_TYPES
from patients.models import Patient, Role
from patients.selectors import get_or_404_audited, patient_list, patient_rows
from patients.services import patient_import_bundle
from pmlm_site.paging import KeptRows, OneQueryPaginator
from prompting.endpoints import endpoint_named
from prompting.errors import GuidanceBusy, GuidanceError
from prompting.guidance import guidance_request_create
from prompting.models import RATING_SCALES, GuidanceRequest, PeerModel, RefinementRun
from prompting.prompts import PromptError, prompt_as_json, prompt_request
from prompting.ratings import RatingError, guidance_rate

IMPORT_ROLES = {Role.PARTNER, Role.CURATOR, Role.ADMIN}
ERRORS = {
    code: OpenApiResponse(ErrorSerializer, description=text)
    for code, text in (
        (400, "Invalid request"),
        (401, "No or invalid token"),
        (403, "Not allowed for this account"),
        (404, "Not found in your organisation"),
        (409, "Not possible in the object's present state"),
        (413, "Body too large"),
        (415, "Unsupported media type"),
        (429, "Too many requests"),
    )
}
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")  # what the importer accepts as an id (patients/fhir/parse.py)
PATIENT_ID = OpenApiParameter(
    "patient_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="FHIR Patient.id", pattern=FHIR_ID.pattern
)
NO_NUL = r"^[^\x00]*$"  # no NUL in any text the API takes (the database refuses it): one is answered 400


def errors(*codes):
    return {code: ERRORS[code] for code in codes}


class IsMember(permissions.BasePermission):
    message = "This account is not a member of any organisation."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and getattr(request.user, "membership", None))


class PartnerView(APIView):
    """Attributes the request to the token's account in the audit trail and records each read."""

    permission_classes = [IsMember]
    read_recorded = False  # a view that recorded its read itself (while writing it out) sets it

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        membership = request.user.membership
        self._audit = set_context(
            AuditContext(
                actor=request.user,
                organisation_id=membership.organisation_id,
                request_id=getattr(request._request, "request_id", ""),
                surface="api",
            )
        )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        if getattr(self, "_audit", None) is not None:
            if request.method == "GET" and response.status_code < 400 and not self.read_recorded:
                # The object by its database id: a FHIR id can itself identify a patient.
                details = {
                    "view": self.__class__.__name__,
                    "count": response.data.get("count") if isinstance(response.data, dict) else None,
                }
                with audit_recorded_while(AuditAction.API_READ, obj=getattr(self, "audited", None), details=details):
                    if hasattr(response, "render"):
                        response.render()  # the body is written while the entry's commit is flushed
            reset_context(self._audit)
            self._audit = None
        return response

    @property
    def organisation(self):
        return self.request.user.membership.organisation

    def patient(self, patient_id: str) -> Patient:
        """Her, in the caller's organisation; any other id is not found, and the refusal is audited."""
        if not FHIR_ID.fullmatch(patient_id):  # no patient can have it (and PostgreSQL refuses a NUL in a query)
            audit_denied(
                object_type="patients.Patient", object_id="", reason="not a FHIR id"
            )  # free text: not recorded
            raise NotFound("Not found in your organisation.")
        self.audited = get_or_404_audited(
            Patient.objects.all(),
            object_id=patient_id,
            anywhere={"external_id": patient_id},
            organisation=self.organisation,
            external_id=patient_id,
        )
        return self.audited


class Pages(PageNumberPagination):
    django_paginator_class = OneQueryPaginator  # the page and its total in one query
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request):
        """A page size that is not a whole number from 1 to the maximum is refused, not silently replaced."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise ValidationError({self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]})
        return int(raw)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
            elif parameter["name"] == self.page_query_param:
                parameter["schema"]["minimum"] = 1
        return parameters


ORDERINGS = {
    "id": "external_id",
    "-id": "-external_id",
    "family_name": "family_name",
    "-family_name": "-family_name",
    "last_encounter_at": "last_encounter_at",
    "-last_encounter_at": "-last_encounter_at",
    "updated_at": "updated_at",
    "-updated_at": "-updated_at",
}


@extend_schema(
    tags=["patients"],
    parameters=[
        OpenApiParameter("q", OpenApiTypes.STR, description="Name, or the start of the patient id", pattern=NO_NUL),
        OpenApiParameter(
            "pregnant", OpenApiTypes.BOOL, description="Only patients in an ongoing pregnancy episode (or not)"
        ),
        OpenApiParameter("ordering", OpenApiTypes.STR, enum=list(ORDERINGS), description="Sort order (default: id)"),
    ],
    responses={200: PatientSerializer(many=True), **errors(400, 401, 403, 404, 429)},
)
class PatientList(PartnerView, generics.ListAPIView):
    serializer_class = PatientSerializer
    pagination_class = Pages

    def get_queryset(self):
        params = self.request.query_params
        pregnant = params.get("pregnant")
        if pregnant is not None and pregnant.lower() not in ("true", "false"):
            raise ValidationError({"pregnant": ["Use true or false."]})
        ordering = params.get("ordering", "id")
        if ordering not in ORDERINGS:
            raise ValidationError({"ordering": [f"One of {', '.join(ORDERINGS)}."]})
        organisation, today = self.organisation, timezone.now().date()
        query = " ".join(params.get("q", "").split()[:5])
        pregnant = None if pregnant is None else pregnant.lower() == "true"

        def rows():  # the same selector as the patient list page: one rule for "pregnant now"
            patients = patient_list(organisation=organisation, query=query, pregnant=pregnant, on=today)
            return patient_rows(patients.order_by(ORDERINGS[ordering], "pk"))

        if query:  # searches differ keystroke by keystroke, and their words stay out of kept SQL
            return rows()
        # Built from these values alone: its SQL is compiled once per process for them.
        return KeptRows(("API patient list", organisation.pk, today, pregnant, ordering), rows)

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        # A list records which patients it showed, while they are written out (nothing more is read).
        count = self.paginator.page.paginator.count
        details = {"view": "PatientList", "count": count, "patients": [patient.pk for patient in page]}
        with audit_recorded_while(AuditAction.API_READ, details=details):
            response = self.get_paginated_response(self.get_serializer(page, many=True).data)
        self.read_recorded = True
        return response


@extend_schema(
    tags=["patients"], parameters=[PATIENT_ID], responses={200: PatientSerializer, **errors(401, 403, 404, 429)}
)
class PatientDetail(PartnerView):
    def get(self, request, patient_id: str):
        return Response(PatientSerializer(self.patient(patient_id)).data)


# What the schema can say about a Bundle; the importer checks the rest of FHIR and answers 422 naming what is wrong.
BUNDLE_REQUEST = {
    "type": "object",
    "description": "A FHIR R4 Bundle; other elements as FHIR defines them.",
    "required": ["resourceType", "type"],
    "properties": {
        "resourceType": {"type": "string", "enum": ["Bundle"]},
        "type": {"type": "string", "enum": sorted(SUPPORTED_BUNDLE_TYPES)},
        "entry": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["resource"],
                "properties": {
                    "fullUrl": {"type": "string", "nullable": True},
                    "resource": {
                        "type": "object",
                        "required": ["resourceType"],
                        "properties": {"resourceType": {"type": "string", "minLength": 1}},
                    },
                },
            },
        },
    },
}


class BundleImport(PartnerView):
    parser_classes = [FhirJSONParser, FhirJSONAsJSONParser]

    @extend_schema(
        tags=["fhir"],
        request={"application/fhir+json": BUNDLE_REQUEST, "application/json": BUNDLE_REQUEST},
        responses={
            200: ImportResultSerializer,
            422: OpenApiResponse(
                FhirErrorSerializer, description="Rejected: OperationOutcome naming the resource and field"
            ),
            **errors(400, 401, 403, 413, 415, 429),
        },
        description="Import one FHIR R4 transaction Bundle, all or nothing (the same service as `import_fhir`).",
    )
    def post(self, request):
        if request.user.membership.role not in IMPORT_ROLES:
            raise PermissionDenied("Only partner, curator and admin accounts import records.")
        if not isinstance(request.data, dict):
            return fhir_error_response("The body must be a FHIR Bundle (a JSON object).")
        result = patient_import_bundle(
            organisation=self.organisation,
            bundle=request.data,
            source=f"api:{request.auth.prefix if request.auth else request.user.username}",
            user=request.user,
        )
        if not result.ok:
            return fhir_error_response(result.error, resource=result.error_resource, field=result.error_field)
        created = sum(c["created"] for k, c in result.counts.items() if k != "skipped")
        updated = sum(c["updated"] for k, c in result.counts.items() if k != "skipped")
        return Response(
            {"status": "imported", "patients": result.patient_external_ids, "created": created, "updated": updated}
        )


@extend_schema(
    tags=["fhir"],
    parameters=[PATIENT_ID],
    responses={(200, "application/fhir+json"): OpenApiTypes.OBJECT, **errors(401, 403, 404, 429)},
    description="Her record as a FHIR R4 transaction Bundle.",
)
class PatientExport(PartnerView):
    def get(self, request, patient_id: str):
        patient = self.patient(patient_id)
        audit_record(AuditAction.EXPORT_BUNDLE, obj=patient)
        return Response(patient_bundle(patient), content_type="application/fhir+json")


class PatientPrompt(PartnerView):
    @extend_schema(
        tags=["prompts"],
        parameters=[PATIENT_ID],
        request=QuestionSerializer,
        responses={200: PromptSerializer, **errors(400, 401, 403, 404, 413, 415, 429)},
        description="The personalised, de-identified hard prompt for a question: use it with any LLM.",
    )
    def post(self, request, patient_id: str):
        patient = self.patient(patient_id)
        data = _valid(QuestionSerializer, request.data)
        try:
            prompt = prompt_request(patient=patient, question=data["question"], at=data.get("at"), user=request.user)
        except PromptError as exc:
            raise ValidationError({"question": [str(exc)]}) from None
        return Response(prompt_as_json(prompt))


IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=False,
    description="Retrying with the same key returns the same request instead of a new one.",
)


class PatientGuidance(PartnerView):
    @extend_schema(
        tags=["guidance"],
        parameters=[PATIENT_ID, IDEMPOTENCY],
        request=GuidanceCreateSerializer,
        responses={202: GuidanceSerializer, **errors(400, 401, 403, 404, 413, 415, 429)},
        description="Queue guidance for a question; poll the URL in `Location` until `status` is done or failed.",
    )
    def post(self, request, patient_id: str):
        patient = self.patient(patient_id)
        data = _valid(GuidanceCreateSerializer, request.data)
        key = request.headers.get("Idempotency-Key", "").strip()
        if len(key) > 100 or "\x00" in key:
            raise ValidationError({"Idempotency-Key": ["At most 100 characters, and no NUL."]})
        try:
            endpoint = endpoint_named(data["endpoint"]) if data.get("endpoint") else None
            guidance = guidance_request_create(
                patient=patient,
                question=data["question"],
                at=data.get("at"),
                endpoint=endpoint,
                use_retrieval=data.get("use_retrieval", True),
                user=request.user,
                idempotency_key=key,
            )
        except GuidanceBusy as exc:
            raise Throttled(wait=exc.retry_after, detail=str(exc)) from None
        except (GuidanceError, PromptError) as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        response = Response(GuidanceSerializer(guidance).data, status=status.HTTP_202_ACCEPTED)
        response["Location"] = f"/api/v1/guidance/{guidance.pk}/"
        return response


def _guidance_in(organisation, guidance_id: int) -> GuidanceRequest:
    return get_or_404_audited(
        GuidanceRequest.objects.select_related("patient", "endpoint", "prompt", "refined_prompt"),
        object_id=guidance_id,
        anywhere={"pk": guidance_id},
        pk=guidance_id,
        patient__organisation=organisation,
    )


@extend_schema(tags=["guidance"], responses={200: GuidanceSerializer, **errors(401, 403, 404, 429)})
class GuidanceDetail(PartnerView):
    def get(self, request, guidance_id: int):
        self.audited = _guidance_in(self.organisation, guidance_id)
        return Response(GuidanceSerializer(self.audited).data)


class GuidanceRatings(PartnerView):
    @extend_schema(
        tags=["guidance"],
        request=RatingSerializer,
        responses={201: RatingSerializer, **errors(400, 401, 403, 404, 409, 413, 415, 429)},
        description="A clinician's rating of finished guidance (one per account; posting again updates it). "
        "Guidance that is not done yet answers 409.",
    )
    def post(self, request, guidance_id: int):
        guidance = _guidance_in(self.organisation, guidance_id)
        data = _valid(RatingSerializer, request.data)
        if not guidance.is_done:
            raise Conflict(f"Only finished guidance can be rated; this one is {guidance.status}.")
        scores = {scale: data[scale] for scale in RATING_SCALES}
        try:
            rating = guidance_rate(
                guidance=guidance,
                rater=request.user,
                scores=scores,
                would_follow=data.get("would_follow"),
                comment=data.get("comment", ""),
            )
        except RatingError as exc:
            raise ValidationError({"non_field_errors": [str(exc)]}) from None
        return Response(RatingSerializer(rating).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["models"], responses={200: PeerModelSerializer(many=True), **errors(400, 401, 403, 404, 429)})
class PeerModelList(PartnerView, generics.ListAPIView):
    serializer_class = PeerModelSerializer
    pagination_class = Pages

    def get_queryset(self):
        return PeerModel.objects.filter(organisation=self.organisation).order_by("-version")


@extend_schema(tags=["models"], responses={200: RefinementRunSerializer(many=True), **errors(400, 401, 403, 404, 429)})
class RefinementRunList(PartnerView, generics.ListAPIView):
    serializer_class = RefinementRunSerializer
    pagination_class = Pages

    def get_queryset(self):
        return RefinementRun.objects.filter(organisation=self.organisation).order_by("-version")


def _valid(serializer_class, data) -> dict:
    if not isinstance(data, dict):
        raise ValidationError({"non_field_errors": ["The body must be a JSON object."]})
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Any other URL under /api/ answers in the API's error shape, not with an HTML page."""
    return JsonResponse(error_body(404, "not_found", f"No API endpoint at {request.path}."), status=404)
