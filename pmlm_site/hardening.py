"""Request and response rules every page, API call and admin view shares.

- A NUL in the URL (path or query string) is refused with 400: no clinical value contains one, and
  PostgreSQL refuses it in any string, so it would otherwise fail deep inside a query.
- Every dynamic response is `Cache-Control: no-store, private`: they carry patient data or depend on
  who is signed in, and no browser or proxy may keep them. Static files are served earlier in the
  chain (WhiteNoise) and stay cacheable.
"""

from urllib.parse import unquote_to_bytes

from django.http import HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control


class RefuseNulMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if "\x00" in request.path or b"\x00" in unquote_to_bytes(request.META.get("QUERY_STRING", "")):
            message = "The address contains a NUL character."
            if request.path.startswith("/api/"):
                # Imported here: api.errors imports DRF's views, whose settings import api.parsers, which imports
                # api.errors; middleware is imported while that chain is still loading.
                from api.errors import error_body

                return JsonResponse(error_body(400, "invalid", message), status=400)
            return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")
        return self.get_response(request)


class NoStoreMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if "public" in response.get("Cache-Control", ""):
            del response["Cache-Control"]
        patch_cache_control(response, no_store=True, private=True, max_age=0)
        return response
