"""Settings shared by every environment.

Everything that differs between a laptop and production comes from the
environment (django-environ); defaults here are the embedded development ones.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

SECRET_KEY = env("DJANGO_SECRET_KEY", default="dev-only-insecure-key-change-me")
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_filters",
    # django-ninja: its templates and static files serve /api/docs/ without a CDN.
    "ninja",
    "core",
    "contracts",
    "billing.invoices",
    "billing.payments",
    "billing.collections",
    "billing.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "config.middleware.SecurityHeadersMiddleware",
    "config.middleware.RequestGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # After sessions, before common: the page language from the person's choice (cookie set
    # by /i18n/setlang/), else the browser's Accept-Language, else English.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "config.middleware.PrivateCacheMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "contracts.context_processors.account",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"),
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Redis must never hang a request: a paused or unreachable server fails within these
# timeouts, and the circuit breaker (config.cache) then skips it for CACHE_BREAKER_SECONDS
# so a request pays that stall at most once per period. Callers treat a failing cache
# as a miss (docs/operations.md).
CACHE_CONNECT_TIMEOUT = env.float("CACHE_CONNECT_TIMEOUT", default=0.25)
CACHE_SOCKET_TIMEOUT = env.float("CACHE_SOCKET_TIMEOUT", default=0.5)
CACHE_BREAKER_SECONDS = env.float("CACHE_BREAKER_SECONDS", default=15)


def redis_cache(url: str) -> dict:
    """The cache settings for a Redis URL: Django's RedisCache behind the breaker."""
    return {
        "BACKEND": "config.cache.ResilientRedisCache",
        "LOCATION": url,
        "OPTIONS": {
            "socket_connect_timeout": CACHE_CONNECT_TIMEOUT,
            "socket_timeout": CACHE_SOCKET_TIMEOUT,
        },
    }


_REDIS_URL = env("REDIS_URL", default="")
CACHES = {
    "default": redis_cache(_REDIS_URL)
    if _REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
# Failed logins per username and client address before the pair is locked out
# (contracts.auth); both windows in seconds. See docs/security.md.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW = env.int("LOGIN_FAILURE_WINDOW", default=15 * 60)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# Proxies in front of the portal that append the client's address to X-Forwarded-For
# (1 behind one TLS proxy). 0 trusts no header: the address is REMOTE_ADDR. Lockouts and
# rate limits count per client address (contracts.auth.client_ip).
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
LOGIN_REDIRECT_URL = "/invoices/"
# Password-reset e-mails: per e-mail address and per client address within the window
# (seconds); past it the form answers as usual but sends nothing (per e-mail) or says to
# wait (per client address). See contracts.auth.ThrottledPasswordResetView.
PASSWORD_RESET_LIMIT_PER_EMAIL = env.int("PASSWORD_RESET_LIMIT_PER_EMAIL", default=3)
PASSWORD_RESET_LIMIT_PER_ADDRESS = env.int("PASSWORD_RESET_LIMIT_PER_ADDRESS", default=10)
PASSWORD_RESET_WINDOW = env.int("PASSWORD_RESET_WINDOW", default=60 * 60)
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en"
# Documents and e-mails go out in a customer's document language; pages follow the person's
# choice (the switcher in the header, kept in the language cookie for a year), else the
# browser's Accept-Language.
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LANGUAGE_COOKIE_AGE = 365 * 24 * 60 * 60
LANGUAGE_COOKIE_SAMESITE = "Lax"
LANGUAGE_COOKIE_HTTPONLY = True
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
MEDIA_URL = "/media/"
MEDIA_ROOT = env.path("DJANGO_MEDIA_ROOT", default=BASE_DIR / "media")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="billing@example.com")

SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000").rstrip("/")

# --- Billing -----------------------------------------------------------------
GRACE_PERIOD_DAYS = env.int("GRACE_PERIOD_DAYS", default=7)
# A paid invoice can be reported this many days after it was paid; an unpaid one always.
DISPUTE_WINDOW_DAYS = env.int("DISPUTE_WINDOW_DAYS", default=90)
PAYMENT_TERMS_DAYS = env.int("PAYMENT_TERMS_DAYS", default=14)
INVOICE_NUMBER_SERIES = env("INVOICE_NUMBER_SERIES", default="INV")
# Contracts per billing-run chunk: one transaction and one Celery message each
# (docs/decisions.md, "Billing run fan-out").
BILLING_CHUNK_SIZE = env.int("BILLING_CHUNK_SIZE", default=100)
CREDIT_NOTE_NUMBER_SERIES = env("CREDIT_NOTE_NUMBER_SERIES", default="CN")
# Every supported currency has two minor-unit digits; see docs/decisions.md.
SUPPORTED_CURRENCIES = ("EUR", "USD", "GBP", "CHF", "INR")
# The seller as documents print it. SELLER_ADDRESS is the street and town lines without the
# country: documents add the country in words, in the document's language.
SELLER = {
    "name": env("SELLER_NAME", default="IPv4 Lease Networks GmbH"),
    "address_lines": env.list("SELLER_ADDRESS", default=["Friedrichstraße 123", "10117 Berlin"]),
    # Structured parts of the address for e-invoices (EN 16931 BT-35, BT-37, BT-38).
    "street": env("SELLER_STREET", default="Friedrichstraße 123"),
    "postal_code": env("SELLER_POSTAL_CODE", default="10117"),
    "city": env("SELLER_CITY", default="Berlin"),
    "country": env("SELLER_COUNTRY", default="DE"),
    "vat_id": env("SELLER_VAT_ID", default="DE811111111"),
    # Steuernummer: printed and sent when an invoice must not carry the VAT id (BR-O-02).
    "tax_number": env("SELLER_TAX_NUMBER", default="37/123/45678"),
    "email": env("SELLER_EMAIL", default="billing@example.com"),
    "phone": env("SELLER_PHONE", default="+49 30 1234567"),
    "contact_name": env("SELLER_CONTACT_NAME", default="Billing department"),
    # Particulars a GmbH must print on business letters (§ 35a GmbHG).
    "legal_form": env("SELLER_LEGAL_FORM", default="GmbH"),
    "seat": env("SELLER_SEAT", default="Berlin"),
    "register_court": env("SELLER_REGISTER_COURT", default="Amtsgericht Charlottenburg"),
    "register_number": env("SELLER_REGISTER_NUMBER", default="HRB 123456 B"),
    "managing_directors": env.list(
        "SELLER_MANAGING_DIRECTORS", default=["Erika Mustermann", "Max Mustermann"]
    ),
    # Where transfers go; the demo IBAN is a valid test number of a made-up account.
    "bank_name": env("SELLER_BANK_NAME", default="Demo Bank Berlin"),
    "iban": env("SELLER_IBAN", default="DE89370400440532013000"),
    "bic": env("SELLER_BIC", default="COBADEFFXXX"),
}
# Indian GST invoices print a SAC code per line; every line the portal bills is the lease
# of IPv4 address space (docs/decisions.md, issue 15).
INDIA_SAC_CODE = env("INDIA_SAC_CODE", default="997339")

# --- Payments ----------------------------------------------------------------
PAYMENT_PROVIDER = env("PAYMENT_PROVIDER", default="sandbox")
STRIPE_SECRET_KEY = env("STRIPE_SECRET_KEY", default="")
STRIPE_PUBLISHABLE_KEY = env("STRIPE_PUBLISHABLE_KEY", default="")
STRIPE_WEBHOOK_SECRET = env("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_API_BASE = env("STRIPE_API_BASE", default="https://api.stripe.com")
STRIPE_WEBHOOK_TOLERANCE = env.int("STRIPE_WEBHOOK_TOLERANCE", default=300)
# Razorpay serves Pay online for INR invoices once RAZORPAY_KEY_ID is set
# (billing.payments.providers.provider_for_currency); its webhooks come to /razorpay/.
RAZORPAY_KEY_ID = env("RAZORPAY_KEY_ID", default="")
RAZORPAY_KEY_SECRET = env("RAZORPAY_KEY_SECRET", default="")
RAZORPAY_WEBHOOK_SECRET = env("RAZORPAY_WEBHOOK_SECRET", default="")
RAZORPAY_API_BASE = env("RAZORPAY_API_BASE", default="https://api.razorpay.com")
# Requests to /stripe/ (and /razorpay/) that fail the signature check, per client address
# and minute, before the address gets 429; one sample per address and minute is stored.
STRIPE_WEBHOOK_INVALID_PER_MINUTE = env.int("STRIPE_WEBHOOK_INVALID_PER_MINUTE", default=60)
# Stored events are applied by workers. 0: one task per event, queued on commit. Above 0:
# each web process queues at most one "apply what is waiting" task per this many seconds,
# due that long after, so every event stored meanwhile is in its reach (the publish costs
# the intake as much as the INSERT does; docs/decisions.md, "Billing run fan-out").
STRIPE_WEBHOOK_APPLY_BATCH_SECONDS = env.float("STRIPE_WEBHOOK_APPLY_BATCH_SECONDS", default=0.05)
# Two budgets for calls to Stripe: seconds to connect, seconds to wait for the answer,
# retries. A web request (Pay online, a saved card, the admin's refund) makes at most two
# calls (the customer the first time, then the session or charge): 2 x (2 tries x (2 s +
# 5 s) + 0.5 s back-off) = 29 s at worst, under gunicorn's 40 s (config/gunicorn.conf.py),
# so the payer gets the "try again" page rather than a dead worker. Celery tasks are
# retried anyway and may wait longer. tests/faults/test_provider_faults.py checks the sum.
STRIPE_CONNECT_TIMEOUT_SECONDS = env.float("STRIPE_CONNECT_TIMEOUT_SECONDS", default=2.0)
STRIPE_TIMEOUT_SECONDS = env.float("STRIPE_TIMEOUT_SECONDS", default=5.0)
STRIPE_MAX_NETWORK_RETRIES = env.int("STRIPE_MAX_NETWORK_RETRIES", default=1)
STRIPE_TASK_TIMEOUT_SECONDS = env.float("STRIPE_TASK_TIMEOUT_SECONDS", default=30.0)
STRIPE_TASK_MAX_NETWORK_RETRIES = env.int("STRIPE_TASK_MAX_NETWORK_RETRIES", default=3)
# An open Checkout Session lives one hour at Stripe; it is reused a little less long.
CHECKOUT_REUSE_MINUTES = env.int("CHECKOUT_REUSE_MINUTES", default=50)
# A second Pay online click while the first one's session is still being created waits
# this long for it (no lock held), then is asked to try again.
CHECKOUT_WAIT_SECONDS = env.float("CHECKOUT_WAIT_SECONDS", default=10.0)
# A saved-card charge that waits for 3-D Secure blocks the invoice's other charges; after
# this long unconfirmed it is cancelled at the provider so automatic charging goes on.
REQUIRES_ACTION_TIMEOUT_HOURS = env.int("REQUIRES_ACTION_TIMEOUT_HOURS", default=24)
# The sandbox (test-mode) provider refuses to run with DEBUG off or a live Stripe key
# unless this is set; the test settings set it.
SANDBOX_ALLOWED = env.bool("SANDBOX_ALLOWED", default=False)
# How long a sandbox bank debit (test IBAN) stays "processing" before the worker settles it.
SANDBOX_DEBIT_DELAY_SECONDS = env.int("SANDBOX_DEBIT_DELAY_SECONDS", default=30)

# --- API ---------------------------------------------------------------------
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=100)
# Invalid bearer tokens per client address within LOGIN_FAILURE_WINDOW before the
# address is locked out of the API for LOGIN_LOCKOUT_SECONDS.
API_TOKEN_FAILURE_LIMIT = env.int("API_TOKEN_FAILURE_LIMIT", default=20)

# Error e-mails and pages show settings and request data: passwords inside URLs
# (REDIS_URL, CELERY_BROKER_URL, DATABASE_URL in the environment) are masked too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "core.reporting.CredentialHidingReporterFilter"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
}

# --- VAT ids -------------------------------------------------------------------
# VIES (the EU's VAT id check) is asked by a Celery task after a VAT id changes and daily
# for ids it has not answered; while it is on, reverse charge needs its "valid". An
# outage never blocks billing: the last answer stands. Production switches it on.
VIES_ENABLED = env.bool("VIES_ENABLED", default=False)
VIES_TIMEOUT_SECONDS = env.int("VIES_TIMEOUT_SECONDS", default=20)
VIES_RECHECK_DAYS = env.int("VIES_RECHECK_DAYS", default=30)

# --- Outgoing webhooks (billing.api.webhooks) ------------------------------------------
# Customers' endpoints may not be private, loopback or link-local addresses: the portal
# would otherwise post into its own network for whoever registers such a URL. Development
# and the tests (a receiver on 127.0.0.1) switch it on.
WEBHOOK_ALLOW_PRIVATE_HOSTS = env.bool("WEBHOOK_ALLOW_PRIVATE_HOSTS", default=False)
# Seconds to connect and to wait for the answer of one delivery attempt.
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=5.0)
# Retries of an event go on this long; an endpoint failing this long is disabled.
WEBHOOK_RETRY_DAYS = env.int("WEBHOOK_RETRY_DAYS", default=3)

# --- Celery ------------------------------------------------------------------
# The broker is Redis in production (CELERY_BROKER_URL); local.py uses the filesystem
# transport so `make demo` needs no server. Tasks are acknowledged after they ran, and
# a task whose worker died is delivered again: every task is idempotent.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="memory://")
CELERY_RESULT_BACKEND = env("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# A web request that queues work while Redis is down must not hang: give up quickly,
# log it, and let the next beat tick find the work by query.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.2,
}
# A message taken by a worker that dies (acks_late) goes back to the queue after the
# visibility timeout (Redis transport; the default is an hour). It must stay above the
# longest a task may run (CELERY_TASK_TIME_LIMIT) and the longest countdown of a retry
# (core.tasks.RETRY_BACKOFF_MAX), or a message still being worked on, or still waiting
# for its retry, is handed to a second worker. core.checks refuses a setting that is not.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=900)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
}
# Exactly one beat publishes: the others wait on a PostgreSQL advisory lock (config.beat).
CELERY_BEAT_SCHEDULER = "config.beat:SingleBeatScheduler"
# Days after the first failed automatic charge on which it is tried again.
CHARGE_RETRY_DAYS = (1, 3, 5)
# Reminders before the contract is cancelled, in days before the cancellation date.
CANCELLATION_WARNING_DAYS = (3, 1)
# Staff alerts (e.g. a payment that arrived after its contract was cancelled) go to ADMINS.
ADMINS = [("Billing staff", e) for e in env.list("DJANGO_ADMINS", default=[SELLER["email"]])]

# --- Security headers (docs/security.md) ------------------------------------------
# Every environment sends them, so a page that breaks under the policy breaks in
# development first. Scripts and styles come only from our own static files: no
# inline <script>, no event-handler attributes, no style attributes.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'none'"],
    "frame-ancestors": ["'none'"],
    # "Pay online" and "Add a card" POST to the portal, which answers 303 to Stripe
    # Checkout; browsers (Chromium) apply form-action to that redirect as well.
    "form-action": ["'self'", "https://checkout.stripe.com"],
}
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Users come with their memberships in one query (every customer page needs both).
AUTHENTICATION_BACKENDS = ["contracts.backends.MemberBackend"]
# One-to-one rows of the customer that MemberBackend joins into the query it already makes
# for the user and memberships (contracts knows no billing model; this wires them): the
# invoice list's cache version, so a repeat view of /invoices/ pays no query of its own.
MEMBERSHIP_CUSTOMER_RELATED = ["invoice_list_version"]
# Sessions are read from the cache (Redis in production) and written through to the
# database: a page view saves a database round trip, and neither a cache flush nor an
# outage logs anybody out (config/sessions.py).
SESSION_ENGINE = "config.sessions"
