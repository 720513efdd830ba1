"""Development and `make demo`: SQLite, console e-mail, sandbox payments."""

from .base import *  # noqa: F403
from .base import BASE_DIR, env

DEBUG = env.bool("DJANGO_DEBUG", default=True)

# An embedded broker: messages are files under var/celery, no Redis needed for the demo.
_CELERY_DIR = BASE_DIR / "var" / "celery"
_CELERY_DIR.mkdir(parents=True, exist_ok=True)
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_CELERY_DIR),
        "data_folder_out": str(_CELERY_DIR),
        "control_folder": str(_CELERY_DIR / "control"),
        "store_processed": False,
    }

# The web process and the Celery worker share one cache (invoice-list versions, cached
# pages, sessions, rate limits): with an in-process cache a payment or cancellation made
# by the worker would stay unseen on the list pages until their entries expired.
if not env.str("REDIS_URL", default=""):
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(BASE_DIR / "var" / "cache"),
        }
    }

# Receivers on this machine (a local test server, 127.0.0.1) may get outgoing webhooks.
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=True)
