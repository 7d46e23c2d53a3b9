"""Settings of the image inventory console, read from environment variables.

Every variable is documented in README.md ("Settings"). A bad value stops start-up with an
error naming the variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from console.env import (
    check_fernet_keys,
    check_redis_url,
    check_time_zone,
    env_bool,
    env_int,
    env_list,
    local_secret,
    parse_database_url,
    redis_url_of_test_worker,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("IMAGESYNC_VAR_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ.get("SECRET_KEY") or local_secret(VAR_DIR / "secret_key")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

# Key(s) that encrypt registry secrets at rest. Comma-separated: the first encrypts, all decrypt
# (see `manage.py rotate_encryption_key`). The embedded default keeps one in var/.
ENCRYPTION_KEYS = check_fernet_keys(env_list("ENCRYPTION_KEY", []))
ENCRYPTION_KEY_FILE = VAR_DIR / "encryption_key"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # runserver (bin/dev) leaves static files to whitenoise too, as gunicorn does.
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",
    "django_htmx",
    "django_filters",
    "django_q",
    "imagesync",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "apitokens",
]

MIDDLEWARE = [
    "imagesync.preferences.ResetLocaleMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Static files before anything that needs a session or a database (whitenoise's advice).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After the session, before CommonMiddleware (Django's order): the language cookie, then
    # Accept-Language; UserPreferenceMiddleware then applies a signed-in user's stored choice.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "imagesync.preferences.UserPreferenceMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "imagesync.middleware.ProjectScopeMiddleware",
    "imagesync.middleware.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    # Last, as django-axes asks: it turns a refused sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "console.urls"
WSGI_APPLICATION = "console.wsgi.application"

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
                "imagesync.context_processors.project_scope",
            ],
        },
    },
]
# Django's form renderer, with the common widgets written in Python (same HTML, less time).
FORM_RENDERER = "imagesync.formrender.WidgetRenderer"

DATABASES = {
    "default": parse_database_url(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}", BASE_DIR
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# On PostgreSQL the sync's per-repository statements are prepared once per connection
# (imagesync.bulk._Prepared). Turn off behind a connection pooler in transaction mode
# (PgBouncer's pool_mode = transaction), which hands a session to other clients.
DATABASE_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", True)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "imagesync:image-list"
LOGOUT_REDIRECT_URL = "login"
LOGIN_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5, minimum=1)
LOGIN_LOCKOUT_SECONDS = env_int("LOGIN_LOCKOUT_SECONDS", 900, minimum=1)

# Sign-in lockout (django-axes): LOGIN_FAILURE_LIMIT failures for one username, or from one
# client address, refuse sign-in with HTTP 429 for LOGIN_LOCKOUT_SECONDS. Lockouts are listed
# (and cleared) in the admin under "Access attempts". Only the sign-in forms call
# authenticate(); API tokens never reach axes, so a bad token cannot lock anybody out.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "imagesync.auth.SignInLockoutHandler"
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_LOCKOUT_SECONDS)
AXES_LOCKOUT_PARAMETERS = [["username"], ["ip_address"]]
AXES_LOCKOUT_CALLABLE = "imagesync.auth.lockout_response"
AXES_CLIENT_IP_CALLABLE = "imagesync.auth.client_ip"
AXES_USERNAME_CALLABLE = "imagesync.auth.client_username"
# Attempts made while locked out do not push the end of the lockout further away.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# A success clears that username's failures only (SignInLockoutHandler): axes' own reset
# would also clear the failures of the client address, so a signed-in account could reset an
# attacker's count against other usernames.
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False

# Languages of the console (README "Languages"). LANGUAGE_CODE is also the language of the
# management commands, whose output scripts parse: it stays English.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = check_time_zone(os.environ.get("TIME_ZONE", "UTC"))
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "static"
# whitenoise serves what `collectstatic` (run by bin/run) put in STATIC_ROOT: compressed, under
# content-hashed names, with far-future cache headers (console/staticfiles.py).
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "console.staticfiles.ConsoleStaticFilesStorage"},
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing one

# --- security ------------------------------------------------------------------------------
# HTTPS=true is the production switch: secure cookies, HSTS and redirect to HTTPS.
HTTPS = env_bool("HTTPS", False)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
BEHIND_PROXY = env_bool("BEHIND_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# --- background work (django-q2) ------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "").strip()
if REDIS_URL and os.environ.get("IMAGESYNC_TEST_REDIS_PER_WORKER"):
    # .ci/run: the suite on PostgreSQL + Redis in parallel test workers, each on its own database.
    REDIS_URL = redis_url_of_test_worker(REDIS_URL, os.environ.get("PYTEST_XDIST_WORKER", ""))
SYNC_TASK_TIMEOUT = env_int("SYNC_TASK_TIMEOUT", 6 * 3600, minimum=60)
Q_CLUSTER = {
    "name": "imagesync",
    "workers": env_int("Q_WORKERS", 2, minimum=1),
    "timeout": SYNC_TASK_TIMEOUT,
    "retry": SYNC_TASK_TIMEOUT + 600,  # larger than timeout, or long tasks run twice
    "max_attempts": 1,
    "ack_failures": True,
    "catch_up": False,  # no burst of missed scheduled runs after downtime
    "save_limit": 1000,
    "label": "Background tasks",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = check_redis_url(REDIS_URL)
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    Q_CLUSTER["orm"] = "default"
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "imagesync_cache",
        }
    }

# A running sync task writes a heartbeat at least this often; the watchdog finishes a task whose
# heartbeat is older than SYNC_HEARTBEAT_TIMEOUT seconds as interrupted.
SYNC_HEARTBEAT_INTERVAL = env_int("SYNC_HEARTBEAT_INTERVAL", 10, minimum=1)
SYNC_HEARTBEAT_TIMEOUT = env_int("SYNC_HEARTBEAT_TIMEOUT", 120, minimum=2)
SYNC_WORKERS = env_int("SYNC_WORKERS", 8, minimum=1)
# Images the repository listings of one process hold at once (imagesync.sync.budget): a few
# huge repositories are synced fewer at a time, within a bounded memory.
SYNC_LISTING_BUDGET = env_int("SYNC_LISTING_BUDGET", 100_000, minimum=1)
# A sync is split into jobs that any worker process may claim: one per registry listing, and
# one per SYNC_JOB_SIZE repositories. A job whose worker died is re-run by another, at most
# SYNC_JOB_ATTEMPTS times in all.
SYNC_JOB_SIZE = env_int("SYNC_JOB_SIZE", 10, minimum=1)
SYNC_JOB_ATTEMPTS = env_int("SYNC_JOB_ATTEMPTS", 3, minimum=1)
# Changes and closed image intervals older than this are purged daily (imagesync.history).
HISTORY_RETENTION_DAYS = env_int("HISTORY_RETENTION_DAYS", 400, minimum=1)
SYNC_SCHEDULE_CRON = os.environ.get("SYNC_SCHEDULE_CRON", "0 1 * * *")

# Registry events (imagesync.events): a refresh waits for a quiet moment, at most
# REGISTRY_EVENTS_COALESCE_MS after the first event of a burst, then takes every repository
# marked meanwhile; a connection's receiver
# answers 429 beyond REGISTRY_EVENTS_PER_MINUTE requests and 413 to a body over
# REGISTRY_EVENTS_MAX_BYTES. CONSOLE_URL: the console's address as registries reach it (the
# receiver URLs that `manage.py registry webhook` and the API print).
REGISTRY_EVENTS_COALESCE_MS = env_int("REGISTRY_EVENTS_COALESCE_MS", 1000)
REGISTRY_EVENTS_PER_MINUTE = env_int("REGISTRY_EVENTS_PER_MINUTE", 60000, minimum=1)
REGISTRY_EVENTS_MAX_BYTES = env_int("REGISTRY_EVENTS_MAX_BYTES", 1048576, minimum=1024)
CONSOLE_URL = os.environ.get("CONSOLE_URL", "http://127.0.0.1:8000").rstrip("/")
# Image View, the Changes tab and their API lists count matches only up to this many
# (imagesync.paging): past it they say "more than N" and the API's count is a lower bound.
IMAGE_COUNT_LIMIT = env_int("IMAGE_COUNT_LIMIT", 10000, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO").upper()},
    # axes logs every sign-in at INFO; its warnings (failures, lockouts) are the useful part.
    "loggers": {
        "django": {"level": "INFO"},
        "urllib3": {"level": "WARNING"},
        "axes": {"level": "WARNING"},
    },
}

# --- JSON API ---------------------------------------------------------------------------------
# /api/v1/ (imagesync/api): Django REST Framework with drf-spectacular for the OpenAPI schema.
# API_THROTTLE_RATE limits requests per API token (or per signed-in user), e.g. "600/minute".
API_THROTTLE_RATE = os.environ.get("API_THROTTLE_RATE", "600/minute")
API_MAX_PAGE_SIZE = env_int("API_MAX_PAGE_SIZE", 200, minimum=1)
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "imagesync.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["imagesync.api.throttling.ApiRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "imagesync.api.pagination.ApiPagination",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "imagesync.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Image inventory console API",
    "DESCRIPTION": "Images, repositories, registries and sync tasks of your projects.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Object ids in URLs: at most 18 digits, so no id overflows a 64-bit database integer.
    "PATH_CONVERTER_OVERRIDES": {
        "api_id": {"type": "integer", "minimum": 1, "maximum": 999_999_999_999_999_999}
    },
    "SWAGGER_UI_SETTINGS": {"persistAuthorization": True, "deepLinking": True},
    "ENUM_NAME_OVERRIDES": {
        "RepositoryTypeEnum": "imagesync.models.RepositoryType",
        "SyncTaskStatusEnum": "imagesync.models.SyncTask.Status",
        "SyncResultStatusEnum": "imagesync.models.SyncTaskRepository.Status",
        "RegistryKindEnum": "imagesync.models.Registry.Kind",
        "ConnectionStatusEnum": "imagesync.models.Registry.ConnectionStatus",
        "RoleEnum": "imagesync.models.ProjectMembership.Role",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "imagesync.api.schema.add_error_responses",
    ],
}
