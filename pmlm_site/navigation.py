"""The header's links, reversed once per process (and script prefix) rather than on every page: ten reversals were
a few percent of the patient list's time."""

from functools import lru_cache

from django.urls import get_script_prefix, reverse

LINKS = {
    "home": "home",
    "patients": "patients:list",
    "jobs": "jobs",
    "ab_summary": "ab-summary",
    "evaluations": "evaluations:list",
    "refinement": "refinement:list",
    "curation": "admin:index",
    "sign_out": "logout",
}


@lru_cache(maxsize=8)
def _links(script_prefix: str) -> dict[str, str]:
    return {name: reverse(view) for name, view in LINKS.items()}


def navigation(request) -> dict:
    return {"nav": _links(get_script_prefix())}
