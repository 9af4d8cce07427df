"""Veridict settings, read from the environment (django-environ).

With DJANGO_DEBUG=true (as `make run` sets) and nothing else, Veridict runs locally on SQLite with a
server-free Celery transport. Without it the settings are production's and the process refuses to
start without DJANGO_SECRET_KEY; production also sets DJANGO_ALLOWED_HOSTS, DATABASE_URL, REDIS_URL
and the key file paths; the README lists them.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import environ
import structlog
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

# Production is the default: a process that forgets DJANGO_DEBUG must not serve tracebacks, drop
# the secure cookies or sign sessions with a public key. `make run` and the tests set it to true.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env("DJANGO_SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: production needs a secret key of its own "
            "(set DJANGO_DEBUG=true for a local development instance)"
        )
    # Only a development instance (DEBUG on, bound to the loopback by `make run`) signs with a
    # key everybody knows; `check --deploy` refuses it.
    SECRET_KEY = "django-insecure-local-development-only-never-in-production"  # noqa: S105
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Local state of a development instance: SQLite file, keys, Celery's file transport. Git ignores it.
VAR_DIR = Path(env("VERIDICT_VAR_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "axes",
    "timestamping",
    "audit",
    "review",
    "staff",
    "bias",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes asks: turns a lockout into its 429 page.
    "axes.middleware.AxesMiddleware",
]

# AxesStandaloneBackend first: it refuses a locked-out login before a password is checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Admin login lockout (django-axes): after AXES_FAILURE_LIMIT refused logins of one username from
# one address, that pair is locked out for VERIDICT_LOCKOUT_HOURS. By pair, not by address alone,
# so that behind a proxy (one address for everyone) one person's typos lock out only themselves.
AXES_FAILURE_LIMIT = env.int("VERIDICT_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = env.float("VERIDICT_LOCKOUT_HOURS", default=1.0)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
# And one username's failures from every address together: at LOGIN_USERNAME_FAILURE_LIMIT within
# the cool-off that username is locked at every address, until the cool-off after its last failure
# ends or an administrator unlocks it (staff/lockout.py; README, "Human review and the admin").
AXES_HANDLER = "staff.lockout.UsernameLimitHandler"
LOGIN_USERNAME_FAILURE_LIMIT = env.int("VERIDICT_LOGIN_USERNAME_FAILURE_LIMIT", default=20)
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "staff/locked_out.html"
# Refused logins and lockouts are recorded as staff.AdminEvent rows; no log line for each too.
AXES_VERBOSE = False
# How many reverse proxies of ours stand in front of the web processes: with N > 0 the client's
# address is the N-th from the right in X-Forwarded-For (each proxy appends the one it saw).
TRUSTED_PROXY_COUNT = env.int("VERIDICT_TRUSTED_PROXY_COUNT", default=0)
AXES_CLIENT_IP_CALLABLE = "veridict.clients.client_ip"

ROOT_URLCONF = "veridict.urls"
WSGI_APPLICATION = "veridict.wsgi.application"

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
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'veridict.sqlite3'}")}
# Created on any database: beat keeps its schedule file here.
VAR_DIR.mkdir(parents=True, exist_ok=True)
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock when a transaction
    # starts, so two sealers cannot both read the same chain head; the timeout waits for that lock.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        # FULL: a 201 and its SET promise that the entry exists. With NORMAL, WAL mode survives a
        # crashed process but a power cut can undo the last commits (bench sqlite_durability
        # measures what FULL costs).
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;",
    }
    # Tests start sealers and workers in other processes, so the test database must be a file;
    # one per test run, so that two runs side by side do not share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    # A new PostgreSQL connection per request costs more than the request itself; the health
    # check replaces a connection the server dropped instead of failing the request with it.
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("VERIDICT_DB_CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            # A Redis that stops answering must not stall requests: rate limits fail open.
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "veridict_cache",
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env("DJANGO_STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))

# Production hardening; `manage.py check --deploy` passes once DJANGO_DEBUG=false.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "audit.authentication.SystemAPIKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["veridict.parsers.IJSONParser"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 100,
    # Per API key (audit.throttling); the cache is Redis with REDIS_URL, else the database.
    "DEFAULT_THROTTLE_RATES": {
        "ai_system": env("VERIDICT_THROTTLE_RATE", default="6000/min"),
        "document_lookup": env("VERIDICT_DOCUMENT_LOOKUP_RATE", default="60/min"),
    },
    "EXCEPTION_HANDLER": "veridict.api_errors.exception_handler",
    # Throttles identify clients by X-Forwarded-For only as far as our own proxies set it;
    # unset, DRF would trust the whole header, which a client can forge to dodge limits.
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
    # `?format=` belongs to the views (tlog-proof receipts, CSV reports), not to DRF's renderers.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Veridict API",
    "DESCRIPTION": "A tamper-evident audit trail for automated decisions.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# The log. ORIGIN names the log in checkpoints and SETs and is the signing key's name.
LOG_ORIGIN = env("VERIDICT_LOG_ORIGIN", default="veridict.local/log")
# The Ed25519 log signing key: PEM text in VERIDICT_LOG_SIGNING_KEY, else the PEM file named here
# (created by `manage.py create_log_key`). Never in the database or the repository.
LOG_SIGNING_KEY = env("VERIDICT_LOG_SIGNING_KEY", default="")
LOG_SIGNING_KEY_FILE = Path(
    env("VERIDICT_LOG_SIGNING_KEY_FILE", default=str(VAR_DIR / "keys" / "log-signing.pem"))
)
# The built-in RFC 3161 TSA: its private key, its certificate and the CA that issued it (PEM files,
# created by `manage.py create_tsa`). Only the CA certificate is published.
TSA_KEY_FILE = Path(env("VERIDICT_TSA_KEY_FILE", default=str(VAR_DIR / "keys" / "tsa-key.pem")))
TSA_CERT_FILE = Path(env("VERIDICT_TSA_CERT_FILE", default=str(VAR_DIR / "keys" / "tsa-cert.pem")))
TSA_CA_CERT_FILE = Path(
    env("VERIDICT_TSA_CA_CERT_FILE", default=str(VAR_DIR / "keys" / "tsa-ca.pem"))
)
# Maximum merge delay: every SET promises that its entry is sealed within this many seconds.
MMD_SECONDS = env.int("VERIDICT_MMD_SECONDS", default=60)
SEAL_INTERVAL_SECONDS = env.float("VERIDICT_SEAL_INTERVAL", default=5.0)
# A seal takes at most this many entries; the rest wait for the next one.
SEAL_MAX_ENTRIES = env.int("VERIDICT_SEAL_MAX_ENTRIES", default=100_000)

# Outside anchor backends besides the built-in TSA (README "Anchoring"): a JSON list of objects,
# e.g. [{"name": "peer", "type": "rfc3161", "url": "https://tsa.example/tsr", "interval": 60,
# "roots": ["/etc/veridict/peer-tsa-ca.pem"]}]; timestamping/anchor_backends.py checks them.
try:
    ANCHOR_BACKENDS = env.json("VERIDICT_ANCHORS", default=[])
except ValueError as _exc:
    raise ImproperlyConfigured(f"VERIDICT_ANCHORS is not JSON: {_exc}") from _exc
# How often beat looks for backends whose interval is due, and how often the sweeper retries
# anchors that failed or went missing (built-in stamps included).
ANCHOR_DUE_INTERVAL_SECONDS = env.float("VERIDICT_ANCHOR_DUE_INTERVAL", default=5.0)
ANCHOR_SWEEP_INTERVAL_SECONDS = env.float("VERIDICT_ANCHOR_SWEEP_INTERVAL", default=30.0)
# A failed anchor is retried after base·2^(failures-1) seconds, at most max, less up to half
# (jitter, so that many jobs failed by one outage do not retry in step).
ANCHOR_RETRY_BASE_SECONDS = env.float("VERIDICT_ANCHOR_RETRY_BASE", default=10.0)
ANCHOR_RETRY_MAX_SECONDS = env.float("VERIDICT_ANCHOR_RETRY_MAX", default=600.0)
# Default HTTP timeout of a remote TSA (a backend may set its own "timeout").
ANCHOR_HTTP_TIMEOUT_SECONDS = env.float("VERIDICT_ANCHOR_HTTP_TIMEOUT", default=10.0)
# Requests per client address to this instance's own TSA at /tsa (DRF rate syntax).
TSA_HTTP_RATE = env("VERIDICT_TSA_RATE", default="60/min")
# If set, GET /metrics wants `Authorization: Bearer <token>`; else it is open (firewall it).
METRICS_TOKEN = env("VERIDICT_METRICS_TOKEN", default="")

# Largest JSON body the API accepts (bulk requests included); larger ones get 413. Only the API's
# own parsers (veridict/parsers.py, audit/api_bulk.py) read this, from the stream.
API_MAX_BODY_BYTES = env.int("VERIDICT_MAX_BODY_BYTES", default=32 * 1024 * 1024)
# Every other body Django reads whole (forms, the admin, the fields beside an uploaded file), and
# the CSRF check reads an anonymous POST before any view runs: those take kilobytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
MEDIA_ROOT = Path(env("DJANGO_MEDIA_ROOT", default=str(VAR_DIR / "media")))

# The master key wraps every subject's data key (audit/vault.py): base64 of 32 bytes in
# VERIDICT_MASTER_KEY, else in the file named here (created by `manage.py create_master_key`).
MASTER_KEY = env("VERIDICT_MASTER_KEY", default="")
MASTER_KEY_FILE = Path(
    env("VERIDICT_MASTER_KEY_FILE", default=str(VAR_DIR / "keys" / "master.key"))
)
# Who may read a receipt: the function decides from the entry and the request (audit/access.py).
RECEIPT_ACCESS = "audit.access.receipt_allowed"
RECEIPT_EXTRA = "audit.access.receipt_extra"

# Celery. With REDIS_URL it is the broker; without, a file transport under var/ needs no server.
CELERY_BROKER_URL = REDIS_URL or "filesystem://"
if not REDIS_URL:
    _celery_dir = VAR_DIR / "celery"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "queue"),
        "data_folder_out": str(_celery_dir / "queue"),
        "processed_folder": str(_celery_dir / "processed"),
        # Where remote control (inspect, ping) keeps its mailboxes; the default is the cwd.
        "control_folder": str(_celery_dir / "control"),
        "store_processed": False,
    }
else:
    # Longer than the hard time limit, so Redis never redelivers a task that is still running.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
# Retry the broker forever: a worker that gave up after an outage would need a person.
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = 240
CELERY_TASK_TIME_LIMIT = 300
CELERY_TASK_IGNORE_RESULT = True
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "batch-seal": {
        "task": "timestamping.batch_seal",
        "schedule": SEAL_INTERVAL_SECONDS,
        "options": {"expires": SEAL_INTERVAL_SECONDS * 0.9},
    },
    # Outside anchors: backends whose interval is due anchor the latest checkpoint; the sweeper
    # retries failed and missing anchors with backoff.
    "anchors-due": {
        "task": "timestamping.anchors_due",
        "schedule": ANCHOR_DUE_INTERVAL_SECONDS,
        "options": {"expires": ANCHOR_DUE_INTERVAL_SECONDS * 0.9},
    },
    "anchors-sweep": {
        "task": "timestamping.anchors_sweep",
        "schedule": ANCHOR_SWEEP_INTERVAL_SECONDS,
        "options": {"expires": ANCHOR_SWEEP_INTERVAL_SECONDS * 0.9},
    },
    # Erases personal data and stored files past each AI system's retention period (daily;
    # a run missed because the workers were down is not worth queueing twice).
    "retention-sweep": {
        "task": "audit.retention_sweep",
        "schedule": 24 * 60 * 60,
        "options": {"expires": 6 * 60 * 60},
    },
}

# Review webhooks (review/webhooks.py): seconds per POST; a failed one is retried after
# base·2^(failures-1) seconds, at most max, less up to half (jitter), by the sweep every
# VERIDICT_WEBHOOK_SWEEP_INTERVAL seconds, and abandoned after max attempts.
WEBHOOK_TIMEOUT_SECONDS = env.float("VERIDICT_WEBHOOK_TIMEOUT", default=10.0)
WEBHOOK_RETRY_BASE_SECONDS = env.float("VERIDICT_WEBHOOK_RETRY_BASE", default=10.0)
WEBHOOK_RETRY_MAX_SECONDS = env.float("VERIDICT_WEBHOOK_RETRY_MAX", default=3600.0)
WEBHOOK_MAX_ATTEMPTS = env.int("VERIDICT_WEBHOOK_MAX_ATTEMPTS", default=12)
WEBHOOK_SWEEP_INTERVAL_SECONDS = env.float("VERIDICT_WEBHOOK_SWEEP_INTERVAL", default=15.0)
# Webhooks go to public https addresses only (veridict/outbound.py). Hosts that may be reached
# over plain http, and networks (CIDR) of receivers on premises that may be private addresses.
WEBHOOK_ALLOW_HTTP_HOSTS = env.list("VERIDICT_WEBHOOK_ALLOW_HTTP_HOSTS", default=[])
WEBHOOK_ALLOW_NETWORKS = [
    str(ipaddress.ip_network(network, strict=False))  # a typo stops the start, not a delivery
    for network in env.list("VERIDICT_WEBHOOK_ALLOW_NETWORKS", default=[])
]
CELERY_BEAT_SCHEDULE["review-webhooks-sweep"] = {
    "task": "review.webhooks_sweep",
    "schedule": WEBHOOK_SWEEP_INTERVAL_SECONDS,
    "options": {"expires": WEBHOOK_SWEEP_INTERVAL_SECONDS * 0.9},
}
# Contests from the subject page (/d/<token>): at most this many per decision and per client
# address (Django cache; "<n>/<s|m|h|d>").
CONTEST_RATE_PER_DECISION = env("VERIDICT_CONTEST_RATE_PER_DECISION", default="3/h")
CONTEST_RATE_PER_ADDRESS = env("VERIDICT_CONTEST_RATE_PER_ADDRESS", default="20/h")

# Public reads (veridict/ratelimit.py): per client address, "<n>/<s|min|h|d>". Bias reports and
# receipts are counted only for readers without an API key or a staff login.
PORTAL_RATES = {
    "lookup": env("VERIDICT_PORTAL_LOOKUP_RATE", default="60/min"),
    "entry": env("VERIDICT_PORTAL_ENTRY_RATE", default="120/min"),
    "bias": env("VERIDICT_BIAS_READ_RATE", default="20/min"),
    "receipt": env("VERIDICT_RECEIPT_READ_RATE", default="60/min"),
}
# Bias audit: public figures leave out cells (attribute values × model version × month) with
# fewer decisions than this (docs/bias.md).
BIAS_MIN_CELL = env.int("VERIDICT_BIAS_MIN_CELL", default=10)

# structlog: readable lines when developing, JSON lines in production. Tracebacks are plain:
# the default rich formatter would print frame locals, and a frame may hold key material.
structlog.configure(
    # Through the standard logging module, so that Celery and gunicorn handle these lines like
    # their own (not as captured stdout at WARNING).
    logger_factory=structlog.stdlib.LoggerFactory(),
    processors=[
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        *(
            [structlog.dev.ConsoleRenderer(exception_formatter=structlog.dev.plain_traceback)]
            if DEBUG
            else [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
        ),
    ],
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env("DJANGO_LOG_LEVEL", default="INFO")},
}
