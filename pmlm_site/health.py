"""The readiness probe, /healthz: can this process serve? The database answers, the broker takes a
connection and the default LLM endpoint is reachable.

Unauthenticated and cheap (no model is loaded, no patient data is read). It says which check failed
and the error's type, never its message: messages can carry hosts, users or URLs. The full error
goes to the log.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connections
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from prompting.endpoints import endpoint_default
from prompting.errors import GuidanceError
from prompting.pmlm.tokens import smollm2_gguf_path

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 2.0


class CheckFailed(Exception):
    """A check's own verdict, with a message that is safe to show."""


def check_database() -> dict:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connections["default"].vendor}


def check_broker() -> dict:
    url = settings.CELERY_BROKER_URL
    scheme = urlsplit(url).scheme or url.partition(":")[0]
    if scheme == "filesystem":
        options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {})
        folders = {
            options.get(k) for k in ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")
        } - {None}
        for folder in folders:
            if not (Path(folder).is_dir() and os.access(folder, os.W_OK | os.X_OK)):
                raise CheckFailed("a broker folder is missing or not writable")
        return {"transport": "filesystem"}
    from kombu import Connection

    with Connection(
        url,
        connect_timeout=TIMEOUT_SECONDS,
        transport_options={
            **getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}),
            "socket_connect_timeout": TIMEOUT_SECONDS,
            "socket_timeout": TIMEOUT_SECONDS,
        },
    ) as connection:
        connection.ensure_connection(max_retries=0, timeout=TIMEOUT_SECONDS)
    return {"transport": scheme}


def check_llm() -> dict:
    """The default endpoint: a local model file that exists and is readable (never loaded), or an HTTP server that
    answers GET /models (any status: reachable is what matters)."""
    try:
        endpoint = endpoint_default()
    except GuidanceError:
        raise CheckFailed("no active default LLM endpoint") from None
    options = endpoint.settings or {}
    if endpoint.kind == "llamacpp":
        if options.get("model_path"):
            path = Path(options["model_path"])
        else:
            try:
                path = smollm2_gguf_path()
            except FileNotFoundError:
                raise CheckFailed("the embedded model file is missing") from None
        _readable(path.open, "the model file is missing or unreadable", magic=b"GGUF")
    elif endpoint.kind == "transformers":
        _readable((Path(options.get("checkpoint", "")) / "config.json").open, "the checkpoint is missing or unreadable")
    elif endpoint.kind == "openai":
        import httpx

        base_url = str(options.get("base_url", "")).rstrip("/")
        if not base_url:
            raise CheckFailed("the endpoint has no base_url")
        try:
            httpx.get(f"{base_url}/models", timeout=TIMEOUT_SECONDS, follow_redirects=False)
        except httpx.HTTPError:
            raise CheckFailed("the server did not answer") from None
    else:
        raise CheckFailed("unknown endpoint kind")
    return {"kind": endpoint.kind}


def _readable(opener, message: str, magic: bytes = b"") -> None:
    try:
        with opener("rb") as handle:
            head = handle.read(len(magic) or 1)
    except OSError:
        raise CheckFailed(message) from None
    if magic and head != magic:
        raise CheckFailed(message)


CHECKS = {"database": check_database, "broker": check_broker, "llm": check_llm}


def run_checks() -> dict:
    results = {}
    for name, check in CHECKS.items():
        started = time.monotonic()
        try:
            result = {"ok": True, **check()}
        except CheckFailed as failure:
            result = {"ok": False, "error": str(failure)}
            logger.warning("Readiness check %s failed: %s", name, failure)
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the type is safe to show, the message not
            result = {"ok": False, "error": type(exc).__name__}
            logger.warning("Readiness check %s failed", name, exc_info=True)
        result["ms"] = round((time.monotonic() - started) * 1000)
        results[name] = result
    return results


@never_cache
@require_safe
def healthz(request):
    checks = run_checks()
    ready = all(c["ok"] for c in checks.values())
    return JsonResponse({"status": "ok" if ready else "fail", "checks": checks}, status=200 if ready else 503)
