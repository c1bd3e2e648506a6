"""Which LLM a question goes to: the site's default endpoint, or one named by a page, the API or a command."""

from prompting.errors import GuidanceError
from prompting.models import LLMEndpoint


def endpoint_default() -> LLMEndpoint:
    endpoint = LLMEndpoint.objects.filter(is_default=True, active=True).first()
    if endpoint is None:
        raise GuidanceError(
            "No default LLM endpoint is configured: a site administrator marks one as default in the admin."
        )
    return endpoint


def endpoint_named(name: str) -> LLMEndpoint:
    endpoint = LLMEndpoint.objects.filter(name=name, active=True).first()
    if endpoint is None:
        names = ", ".join(LLMEndpoint.objects.filter(active=True).values_list("name", flat=True))
        raise GuidanceError(f"No active LLM endpoint named {name!r} (configured: {names or 'none'}).")
    return endpoint
