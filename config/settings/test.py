"""The test suite: PostgreSQL by default (DATABASE_URL), fast hashing, locmem mail."""

from .base import *  # noqa: F403
from .base import BASE_DIR, env

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/portal"),
}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=BASE_DIR / "var" / "test-media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
SITE_URL = "http://testserver"
# Serve static files straight from the source folders (no collectstatic in tests).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True

# Tasks run inline unless a test starts a real worker (tests/test_celery_worker.py), which
# uses this Redis database.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="redis://127.0.0.1:6379/5")
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
# One apply task per stored event, run at the request's commit (tests/fixtures/stripe);
# the batched wake-up has tests of its own (tests/billing/payments/test_webhook_batches.py).
STRIPE_WEBHOOK_APPLY_BATCH_SECONDS = 0
# DEBUG is off in tests; the sandbox provider is what the suite pays through.
SANDBOX_ALLOWED = True
# The schemathesis run sends hundreds of made-up tokens from one address on purpose;
# tests/security/test_login_throttle.py sets its own, small limit.
API_TOKEN_FAILURE_LIMIT = 100_000

# Receivers on this machine (a local test server, 127.0.0.1) may get outgoing webhooks.
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=True)
