"""Errors Django answers itself, outside a DRF view (an unknown address, a crash or a refusal outside DRF, a
malformed request): in the API's JSON shape under /api/, as Django's pages elsewhere.

DRF answers the errors its views raise (api/errors.py); these are the rest, so a partner's client never has to
parse an HTML page."""

from django.http import JsonResponse
from django.views import defaults

API_PREFIX = "/api/"


def _api_error(status: int, code: str, message: str) -> JsonResponse:
    from api.errors import error_body  # late: api.errors imports DRF, whose settings import the api app

    return JsonResponse(error_body(status, code, message), status=status)


def _is_api(request) -> bool:
    return request.path.startswith(API_PREFIX)


def not_found(request, exception=None):
    if _is_api(request):
        return _api_error(404, "not_found", "No such address in the API (see /api/docs/).")
    return defaults.page_not_found(request, exception)


def bad_request(request, exception=None):
    if _is_api(request):
        return _api_error(400, "invalid", "The request could not be read.")
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    if _is_api(request):
        return _api_error(403, "permission_denied", "You do not have permission to do this.")
    return defaults.permission_denied(request, exception)


def server_error(request):
    if _is_api(request):
        return _api_error(500, "server_error", "The server failed to answer this request; it has been logged.")
    return defaults.server_error(request)
