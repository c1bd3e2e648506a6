"""One error shape for the whole API: {"error": {"status", "code", "message", "fields"?}}.

FHIR import failures add an OperationOutcome beside it, naming the resource and the field."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler
from rest_framework.views import set_rollback

logger = logging.getLogger("api")


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object is not in a state that allows this."
    default_code = "conflict"


def error_body(status_code: int, code: str, message: str, fields: dict | None = None) -> dict:
    body = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _message(detail) -> str:
    if isinstance(detail, list):
        return " ".join(_message(d) for d in detail)
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_message(v)}" for k, v in detail.items())
    return str(detail)


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found in your organisation.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = drf_handler(exc, context)
    if response is None:
        # Anything unforeseen is still an answer in the API's shape, never Django's HTML page; it is logged in full.
        view = context.get("view")
        logger.error("Unexpected error in %s", view.__class__.__name__ if view is not None else "the API", exc_info=exc)
        set_rollback()
        return Response(
            error_body(500, "server_error", "The server failed to answer this request; it has been logged."),
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    detail = getattr(exc, "detail", None)
    code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    if isinstance(exc, exceptions.ValidationError):
        fields = detail if isinstance(detail, dict) else {"non_field_errors": detail}
        response.data = error_body(
            response.status_code,
            "invalid",
            "The request is not valid: " + _message(detail),
            {k: [str(m) for m in (v if isinstance(v, list) else [v])] for k, v in fields.items()},
        )
    else:
        response.data = error_body(response.status_code, code if isinstance(code, str) else "error", _message(detail))
    return response


def operation_outcome(message: str, *, resource: str = "", field: str = "") -> dict:
    issue = {"severity": "error", "code": "invalid", "diagnostics": message}
    expression = ".".join(part for part in (resource.split("/")[0] if resource else "", field) if part)
    if expression:
        issue["expression"] = [expression]
    if resource:
        issue["details"] = {"text": resource}
    return {"resourceType": "OperationOutcome", "issue": [issue]}


def fhir_error_response(message: str, *, resource: str = "", field: str = "", status_code: int = 422) -> Response:
    return Response(
        {
            **error_body(status_code, "invalid_fhir", message),
            **operation_outcome(message, resource=resource, field=field),
        },
        status=status_code,
    )
