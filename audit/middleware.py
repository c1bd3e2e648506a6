"""Gives every request an id (kept from a well-formed X-Request-ID, else new) and an audit context."""

import re
import uuid

from audit.services import AuditContext, reset_context, set_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get("X-Request-ID", "")
        request.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        user = getattr(request, "user", None)
        membership = getattr(user, "membership", None) if user is not None and user.is_authenticated else None
        surface = (
            "admin"
            if request.path.startswith("/admin/")
            else "api"
            if request.path.startswith("/api/")
            else "ehr"
            if request.path.startswith("/cds-services")
            else "page"
        )
        token = set_context(
            AuditContext(
                actor=user if membership or (user and user.is_authenticated) else None,
                organisation_id=membership.organisation_id if membership else None,
                request_id=request.request_id,
                surface=surface,
            )
        )
        try:
            response = self.get_response(request)
        finally:
            reset_context(token)
        response["X-Request-ID"] = request.request_id
        return response
