"""JSON from outside (API bodies, bundle files) is refused when nested deeper than any real document,
before Python's decoder recurses into it (10,000 levels raise RecursionError, not a clear refusal)."""

from __future__ import annotations

import json
import re
from itertools import accumulate

# A FHIR Bundle with nested extensions stays well under 30 levels; the API's own bodies under 5.
MAX_JSON_DEPTH = 64

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class JsonTooDeep(ValueError):
    pass


def nesting_depth(raw: bytes) -> int:
    """How deeply arrays and objects nest in this JSON text (brackets inside strings do not count)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def check_depth(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH):
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if (
        raw.count(b"[") + raw.count(b"{") <= max_depth
    ):  # cannot nest deeper than its brackets: the usual case for small bodies
        return
    depth = nesting_depth(raw)
    if depth > max_depth:
        raise JsonTooDeep(f"JSON nested {depth} levels deep; at most {max_depth} are accepted.")


def loads(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH, **kwargs):
    """json.loads, refusing excessive nesting first (JsonTooDeep, a ValueError)."""
    check_depth(raw, max_depth)
    return json.loads(raw, **kwargs)
