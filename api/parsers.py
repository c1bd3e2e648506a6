"""Request bodies: JSON (small) and FHIR JSON (up to the bundle limit), refused early when too large
or nested deeper than any real document (before Python's decoder would recurse into it)."""

import io

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from api.errors import PayloadTooLarge
from pmlm_site.safejson import JsonTooDeep, check_depth

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


class _BoundedJSONParser(JSONParser):
    def limit(self) -> int:
        return JSON_LIMIT

    def parse(self, stream, media_type=None, parser_context=None):
        limit = self.limit()
        _refuse_if_too_large(parser_context, limit)
        raw = stream.read(limit + 1)
        if len(raw) > limit:  # no (or a false) Content-Length
            raise PayloadTooLarge(f"The body is larger than {limit} bytes, the most this endpoint accepts.")
        try:
            check_depth(raw)
        except JsonTooDeep as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        return super().parse(io.BytesIO(raw), media_type, parser_context)


class LimitedJSONParser(_BoundedJSONParser):
    pass


class FhirJSONParser(_BoundedJSONParser):
    media_type = "application/fhir+json"

    def limit(self) -> int:
        return settings.PMLM_MAX_BUNDLE_BYTES


class FhirJSONAsJSONParser(FhirJSONParser):
    """Bundles sent as plain application/json are accepted too."""

    media_type = "application/json"
