"""All settings come from the environment, with embedded defaults that need no servers.

Production sets DJANGO_DEBUG=0, DJANGO_SECRET_KEY, DJANGO_ALLOWED_HOSTS, DATABASE_URL
(PostgreSQL) and CELERY_BROKER_URL (Redis). A fresh clone runs on SQLite and Celery's
filesystem broker under PMLM_VAR_DIR.
"""

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Exchange, Queue

from pmlm_site import lanes

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Nothing may download weights or data from a model hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VAR_DIR = Path(os.environ.get("PMLM_VAR_DIR") or BASE_DIR / "var").resolve()
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off.")
    SECRET_KEY = "insecure-development-key-only-for-debug"
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]" if DEBUG else "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "simple_history",
    "patients",
    "prompting",
    "api",
    "audit",
    "cdshooks",
    "axes",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "pmlm_site.hardening.NoStoreMiddleware",  # after WhiteNoise: static files stay cacheable
    "pmlm_site.hardening.RefuseNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "pmlm_site.security.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "pmlm_site.urls"
WSGI_APPLICATION = "pmlm_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "patients.context_processors.membership",
                "pmlm_site.navigation.navigation",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'pmlm.sqlite3'}",
        conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web process read while a worker writes; the timeout rides out short locks.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    # A file, not memory, so a real Celery worker in the tests sees the same test database.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "patients:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(exist_ok=True)
MEDIA_ROOT = VAR_DIR / "media"
MEDIA_URL = "media/"  # never served publicly: uploads are clinical data
WHITENOISE_USE_FINDERS = True  # serves static files without collectstatic in development

# Bundles of a few thousand resources are normal; anything far larger is refused before parsing.
PMLM_MAX_BUNDLE_BYTES = int(os.environ.get("PMLM_MAX_BUNDLE_BYTES", str(50 * 1024 * 1024)))
PMLM_MAX_BUNDLE_ENTRIES = int(os.environ.get("PMLM_MAX_BUNDLE_ENTRIES", "20000"))
# CDS Hooks: the largest call an EHR may send (her prefetched record), and how long the service waits in all for
# the EHR's FHIR server when something was not prefetched (the EHR itself waits for the cards).
PMLM_CDS_MAX_REQUEST_BYTES = int(os.environ.get("PMLM_CDS_MAX_REQUEST_BYTES", str(10 * 1024 * 1024)))
PMLM_CDS_FHIR_TIMEOUT_SECONDS = float(os.environ.get("PMLM_CDS_FHIR_TIMEOUT_SECONDS", "3"))
# The service's public base URL as EHRs call it (the JWT 'aud' is checked against it); empty: the request's own.
PMLM_CDS_BASE_URL = os.environ.get("PMLM_CDS_BASE_URL", "").rstrip("/")
DATA_UPLOAD_MAX_MEMORY_SIZE = PMLM_MAX_BUNDLE_BYTES
PMLM_AUDIT_RETENTION_DAYS = int(os.environ.get("PMLM_AUDIT_RETENTION_DAYS", str(6 * 365 + 2)))  # six years
# The audit chain's HMAC key lives here, never in the database, so whoever can rewrite rows cannot re-hash an edited
# trail. Retired keys (comma-separated) only check entries written before a rotation. In debug, an empty key means one
# derived from SECRET_KEY.
PMLM_AUDIT_KEY = os.environ.get("PMLM_AUDIT_KEY", "")
PMLM_AUDIT_RETIRED_KEYS = env_list("PMLM_AUDIT_RETIRED_KEYS", "")
if not DEBUG and len(PMLM_AUDIT_KEY) < 32:
    raise ImproperlyConfigured("PMLM_AUDIT_KEY (at least 32 random characters) is required when DJANGO_DEBUG is off.")
# Signed copies of the chain's head, where the database's writers cannot rewrite them (write-once storage in
# production).
# A request writes its audit entry in one INSERT; entries are linked into the chain in batches (one lock, one seal):
# after this many entries from a process, or this many seconds after its oldest unlinked one; beat links the rest.
PMLM_AUDIT_LINK_EVERY = int(os.environ.get("PMLM_AUDIT_LINK_EVERY", "64"))
PMLM_AUDIT_LINK_SECONDS = float(os.environ.get("PMLM_AUDIT_LINK_SECONDS", "2"))
PMLM_AUDIT_ANCHOR_DIR = Path(os.environ.get("PMLM_AUDIT_ANCHOR_DIR") or VAR_DIR / "audit-anchors")
PMLM_DEMO_ORGANISATION = os.environ.get("PMLM_DEMO_ORGANISATION", "demo-clinic")
# The refiner policy's starting checkpoint: empty means SmolLM2-135M-Instruct, converted once from
# the shipped GGUF into VAR_DIR/models/smollm2-135m-instruct.
PMLM_REFINER_BASE_CHECKPOINT = os.environ.get("PMLM_REFINER_BASE_CHECKPOINT", "")

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or "filesystem://"
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
if CELERY_BROKER_URL == "filesystem://":
    _broker_dir = VAR_DIR / "celery-broker"
    for sub in ("out", "processed", "control"):
        (_broker_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "out"),
        "data_folder_out": str(_broker_dir / "out"),
        "processed_folder": str(_broker_dir / "processed"),
        "store_processed": False,
        "control_folder": str(_broker_dir / "control"),  # kombu's default is ./control in the working directory
    }
# Two lanes, each its own queue, workers, time limits and (Redis) visibility timeout: pmlm_site/lanes.py, and README
# "Running in production: lanes, workers and recovery". The prefix lets several deployments (or test runs) share one
# broker without taking each other's work.
PMLM_CELERY_QUEUE = os.environ.get("PMLM_CELERY_QUEUE", "pmlm")
PMLM_LANE_QUEUES = {lane: lanes.queue_name(PMLM_CELERY_QUEUE, lane) for lane in lanes.LANES}
# Interactive: a person waits. At the soft limit a task is stopped and recorded as failed; at the hard one its
# process is killed (prefork pool). Each LLM call has its own, shorter deadline (prompting/llm: 30 s by default).
PMLM_INTERACTIVE_TIME_LIMIT = int(os.environ.get("PMLM_INTERACTIVE_TIME_LIMIT", "45"))
PMLM_INTERACTIVE_SOFT_TIME_LIMIT = int(
    os.environ.get("PMLM_INTERACTIVE_SOFT_TIME_LIMIT", str(max(1, PMLM_INTERACTIVE_TIME_LIMIT - 5)))
)
# On Redis, an interactive task whose worker died is handed to another interactive worker this long after it was
# delivered: past the hard limit, so never while it still runs.
PMLM_INTERACTIVE_VISIBILITY_TIMEOUT = int(
    os.environ.get("PMLM_INTERACTIVE_VISIBILITY_TIMEOUT", str(PMLM_INTERACTIVE_TIME_LIMIT + 15))
)
# The sweep (every PMLM_SWEEP_INTERVAL seconds) fails a job unfinished this long after it started, or after it was
# created when it never started, so nobody waits forever; a batch task is stopped by its worker at the same limit.
PMLM_JOB_LIMITS_SECONDS = {
    "guidance": PMLM_INTERACTIVE_VISIBILITY_TIMEOUT + 10,
    "import": 3600,
    "peer_model": 2 * 3600,
    "comparison": 6 * 3600,
    "refinement": 8 * 3600,
    "evaluation": 8 * 3600,
    "knowledge": 3600,
}
PMLM_SWEEP_INTERVAL = int(os.environ.get("PMLM_SWEEP_INTERVAL", "30"))
# On Redis, a batch task whose worker died is handed on only after the longest batch limit: never while it still
# runs. The sweep has failed it by then, and the redelivered task leaves a failed job alone.
PMLM_BATCH_VISIBILITY_TIMEOUT = int(
    os.environ.get("PMLM_BATCH_VISIBILITY_TIMEOUT", str(max(PMLM_JOB_LIMITS_SECONDS.values()) + 600))
)
if not 0 < PMLM_INTERACTIVE_SOFT_TIME_LIMIT < PMLM_INTERACTIVE_TIME_LIMIT < PMLM_INTERACTIVE_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "The interactive lane needs PMLM_INTERACTIVE_SOFT_TIME_LIMIT < PMLM_INTERACTIVE_TIME_LIMIT "
        "< PMLM_INTERACTIVE_VISIBILITY_TIMEOUT."
    )
if PMLM_BATCH_VISIBILITY_TIMEOUT <= max(PMLM_JOB_LIMITS_SECONDS.values()):
    raise ImproperlyConfigured("PMLM_BATCH_VISIBILITY_TIMEOUT must exceed the longest batch job limit.")
if CELERY_BROKER_URL == "filesystem://":  # one machine's folders: a task taken is gone, nothing is handed on
    PMLM_BROKER_TRANSPORT_OPTIONS_BY_LANE = {lane: CELERY_BROKER_TRANSPORT_OPTIONS for lane in lanes.LANES}
else:
    # A worker takes its lane's options (pmlm_site/celery.py, from the queues it consumes): its own record of
    # unacknowledged tasks, looked through every few seconds, with its own visibility timeout.
    PMLM_BROKER_TRANSPORT_OPTIONS_BY_LANE = {
        lanes.INTERACTIVE: lanes.redis_transport_options(
            PMLM_CELERY_QUEUE,
            lanes.INTERACTIVE,
            visibility_timeout=PMLM_INTERACTIVE_VISIBILITY_TIMEOUT,
            restore_every=max(1, min(5, PMLM_INTERACTIVE_VISIBILITY_TIMEOUT // 4)),
        ),
        lanes.BATCH: lanes.redis_transport_options(
            PMLM_CELERY_QUEUE, lanes.BATCH, visibility_timeout=PMLM_BATCH_VISIBILITY_TIMEOUT, restore_every=60
        ),
    }
    CELERY_BROKER_TRANSPORT_OPTIONS = PMLM_BROKER_TRANSPORT_OPTIONS_BY_LANE[lanes.BATCH]
# A worker without -Q consumes both. Each lane its own exchange and key, as Celery makes for a queue it creates.
CELERY_TASK_QUEUES = [Queue(name, Exchange(name), routing_key=name) for name in PMLM_LANE_QUEUES.values()]
CELERY_TASK_DEFAULT_QUEUE = PMLM_LANE_QUEUES[lanes.BATCH]
CELERY_TASK_ROUTES = lanes.task_routes(PMLM_CELERY_QUEUE)
CELERY_TASK_ANNOTATIONS = {
    **{
        task: {"soft_time_limit": PMLM_INTERACTIVE_SOFT_TIME_LIMIT, "time_limit": PMLM_INTERACTIVE_TIME_LIMIT}
        for task, lane in lanes.TASK_LANES.items()
        if lane == lanes.INTERACTIVE
    },
    **{
        task: {"soft_time_limit": PMLM_JOB_LIMITS_SECONDS[job] - 60, "time_limit": PMLM_JOB_LIMITS_SECONDS[job]}
        for task, job in lanes.BATCH_TASK_LIMITS.items()
    },
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# The sweep fails jobs that stopped moving (a lost worker, a killed machine) so nobody waits forever.
CELERY_BEAT_SCHEDULE = {
    "sweep-stuck-jobs": {"task": "prompting.tasks.sweep_stuck_jobs_task", "schedule": float(PMLM_SWEEP_INTERVAL)},
    "anchor-audit-chain": {"task": "audit.tasks.anchor_audit_task", "schedule": 3600.0},
    "link-audit-entries": {"task": "audit.tasks.link_audit_task", "schedule": PMLM_AUDIT_LINK_SECONDS * 2},
}
# Guidance waiting for a worker (queued or running), at most per account (an API token's, or a clinician's) and per
# organisation; beyond it a request is refused (the API answers 429 with Retry-After).
PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT = int(os.environ.get("PMLM_MAX_PENDING_GUIDANCE_PER_ACCOUNT", "10"))
PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION = int(os.environ.get("PMLM_MAX_PENDING_GUIDANCE_PER_ORGANISATION", "100"))
# Opening a patient's record has the interactive lane read her prompt's start into the local model (prefix reuse:
# a question then costs only its guidance sources and itself); a prefill no worker took within this long is dropped.
PMLM_PREFILL_ON_OPEN = env_bool("PMLM_PREFILL_ON_OPEN", True)
PMLM_PREFILL_EXPIRES_SECONDS = int(os.environ.get("PMLM_PREFILL_EXPIRES_SECONDS", "30"))
# A web process loads the retrieval model and the prompt tokenizer as it starts (in a background thread), so the first
# question after a restart does not wait seconds for them (pmlm_site/wsgi.py).
PMLM_WARM_ON_START = env_bool("PMLM_WARM_ON_START", True)

# A partner token's record is cached this long between requests; revoking it, or changing its account or membership,
# drops it at once (in every process with PMLM_CACHE_URL, else in the process that made the change).
PMLM_TOKEN_CACHE_SECONDS = int(os.environ.get("PMLM_TOKEN_CACHE_SECONDS", "5"))
# A signed-in account (with its membership and organisation) is kept as long between requests, dropped the same way
# when the account, its membership or its organisation changes (patients.auth); 0 reads it on every request.
PMLM_ACCOUNT_CACHE_SECONDS = int(os.environ.get("PMLM_ACCOUNT_CACHE_SECONDS", "5"))
# Her record page's clinical part is cached under her record version, which every write raises
# (prompting.record_page): this bounds how long a rendering is kept at all; 0 renders every time.
PMLM_RECORD_CACHE_SECONDS = int(os.environ.get("PMLM_RECORD_CACHE_SECONDS", "600"))
# API throttling counts requests in the cache: shared across processes with Redis, per process otherwise.
_cache_url = os.environ.get("PMLM_CACHE_URL", "")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
    if _cache_url.startswith(("redis://", "rediss://"))
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "api.authentication.PartnerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["api.parsers.LimitedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_THROTTLE_CLASSES": ["api.throttling.TokenRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"token": os.environ.get("PMLM_API_RATE", "600/min")},
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "PMLM clinic partner API",
    "DESCRIPTION": (
        "Push FHIR R4 records, fetch personalised hard prompts to use with your own LLM, and request guidance "
        "asynchronously. Every object is scoped to your organisation; "
        "authenticate with `Authorization: Bearer <token>`."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
}

SESSION_ENGINE = "pmlm_site.sessions"  # Django's database sessions, each read by one plain statement
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_AGE = int(os.environ.get("DJANGO_SESSION_SECONDS", str(8 * 3600)))  # a clinical shift
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # the readiness probe speaks plain HTTP inside the cluster
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
    if env_bool("DJANGO_BEHIND_TLS_PROXY", False):  # a reverse proxy terminates TLS and says so
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Content Security Policy: only our own scripts (no inline script anywhere, Swagger UI included);
# inline style attributes are allowed for progress bars and htmx's indicator styles.
PMLM_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

# Sign-in lock-out for people (API tokens are throttled instead): 5 failures per username and
# address lock that pair for 15 minutes.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "patients.auth.MemberBackend"]
AXES_FAILURE_LIMIT = int(os.environ.get("PMLM_SIGNIN_FAILURES", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=int(os.environ.get("PMLM_SIGNIN_LOCK_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("DJANGO_LOG_LEVEL", "INFO")},
}
