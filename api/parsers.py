"""Request bodies: JSON (small) and FHIR JSON (up to the bundle limit), refused early when too large."""

from django.conf import settings
from rest_framework.parsers import JSONParser

from api.errors import PayloadTooLarge

JSON_LIMIT = 64 * 1024


def _refuse_if_too_large(parser_context, limit: int):
    request = (parser_context or {}).get("request")
    length = request.META.get("CONTENT_LENGTH") if request is not None else None
    try:
        size = int(length or 0)
    except ValueError:
        size = 0
    if size > limit:
        raise PayloadTooLarge(f"The body is {size} bytes; this endpoint accepts at most {limit} bytes.")


class LimitedJSONParser(JSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_if_too_large(parser_context, JSON_LIMIT)
        return super().parse(stream, media_type, parser_context)


class FhirJSONParser(JSONParser):
    media_type = "application/fhir+json"

    def parse(self, stream, media_type=None, parser_context=None):
        _refuse_if_too_large(parser_context, settings.PMLM_MAX_BUNDLE_BYTES)
        return super().parse(stream, media_type, parser_context)


class FhirJSONAsJSONParser(FhirJSONParser):
    """Bundles sent as plain application/json are accepted too."""

    media_type = "application/json"
