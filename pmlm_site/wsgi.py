"""The web server's entry point (gunicorn, and runserver through WSGI_APPLICATION). Each process, once the app is
loaded, warms what a consultation's first question needs in a background thread (PMLM_WARM_ON_START)."""

import logging
import os
import threading

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pmlm_site.settings")
application = get_wsgi_application()

logger = logging.getLogger("pmlm_site.wsgi")


def warm_up_consultation() -> None:
    from prompting.consultation import consultation_warm_up

    try:
        consultation_warm_up()
    except Exception:  # a model missing or unreadable: the first question loads it, and says so if it cannot
        logger.exception("Warming the consultation's models failed; the first question will load them.")


def start_warming() -> threading.Thread | None:
    from django.conf import settings

    if not settings.PMLM_WARM_ON_START:
        return None
    thread = threading.Thread(target=warm_up_consultation, name="pmlm-warm-up", daemon=True)
    thread.start()
    return thread


start_warming()
