"""System checks for the API's production settings."""

from django.conf import settings
from django.core.checks import Tags, Warning, register

PER_PROCESS_CACHES = ("django.core.cache.backends.locmem.LocMemCache", "django.core.cache.backends.dummy.DummyCache")


@register(Tags.security, Tags.caches)
def throttle_counts_are_shared(app_configs=None, **kwargs):
    """With DEBUG off (production), API throttling must count in a cache every process shares."""
    if settings.DEBUG or settings.CACHES["default"]["BACKEND"] not in PER_PROCESS_CACHES:
        return []
    return [
        Warning(
            "API throttling counts requests in a per-process cache: each web worker allows the full PMLM_API_RATE, "
            "so the deployment as a whole allows several times that.",
            hint="Set PMLM_CACHE_URL=redis://HOST:6379/N (a database of its own, not the Celery broker's).",
            id="pmlm.W001",
        )
    ]
