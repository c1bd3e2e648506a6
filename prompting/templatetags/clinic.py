"""Template helpers for the workspace: provenance names and citation links in guidance text."""

import re

from django import template
from django.utils.html import escape
from django.utils.safestring import mark_safe

register = template.Library()

SOURCE_NAMES = {
    "instructions": "Instructions",
    "self": "Her record",
    "peer": "Similar patients",
    "knowledge": "Guidance sources",
    "question": "Question",
}


@register.filter
def source_name(source: str) -> str:
    return SOURCE_NAMES.get(source, source)


@register.filter
def with_citation_links(text: str, guidance) -> str:
    """Escape the guidance, turn [n] into a link that opens the cited passage below it, and mark
    each sentence that asserts about her what her record does not support, with the reason."""
    numbers = {c["n"] for c in (guidance.citations or [])}

    def link(match: re.Match) -> str:
        n = int(match.group(1))
        if n not in numbers:
            return match.group(0)
        return (
            f'<a class="cite" href="#cite-{guidance.pk}-{n}" data-open="cite-{guidance.pk}-{n}" '
            f'aria-label="source {n}">[{n}]</a>'
        )

    def linked(part: str) -> str:
        return re.sub(r"\[(\d+)\]", link, escape(part)).replace("\n", "<br>")

    text = text or ""
    html, at = [], 0
    for claim in sorted(getattr(guidance, "unsupported_claims", None) or [], key=lambda c: c.get("start", 0)):
        start, end = claim.get("start", -1), claim.get("end", -1)
        if start < at or text[start:end] != claim.get("sentence"):  # the text changed since it was checked
            continue
        reason = escape(claim.get("reason", ""))
        html += [
            linked(text[at:start]),
            (
                f'<mark class="unsupported-claim" title="Not supported by her record: {reason}">'
                f"{linked(text[start:end])}</mark>"
            ),
            f' <span class="claim-reason">({reason})</span>',
        ]
        at = end
    html.append(linked(text[at:]))
    return mark_safe("".join(html))
