"""Template helpers for the workspace: provenance names and citation links in guidance text."""

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()

SOURCE_NAMES = {"instructions": "Instructions", "self": "Her record", "peer": "Similar patients",
                "knowledge": "Guidance sources", "question": "Question"}


@register.filter
def source_name(source: str) -> str:
    return SOURCE_NAMES.get(source, source)


@register.filter
def with_citation_links(text: str, guidance) -> str:
    """Escape the guidance and turn [n] into a link that opens the cited passage below it."""
    numbers = {c["n"] for c in (guidance.citations or [])}

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        if n not in numbers:
            return match.group(0)
        return (f'<a class="cite" href="#cite-{guidance.pk}-{n}" data-open="cite-{guidance.pk}-{n}" '
                f'aria-label="source {n}">[{n}]</a>')

    html = re.sub(r"\[(\d+)\]", link, escape(text or ""))
    return mark_safe(html.replace("\n", "<br>"))
