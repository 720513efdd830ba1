"""System checks of settings: those that only fail under faults (docs/operations.md) and
the portal's `check --deploy` checks (docs/security.md)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from stdnum import iban
from stdnum.eu import vat

from .tasks import RETRY_BACKOFF_MAX


@register()
def check_celery_timeouts(app_configs, **kwargs) -> list[Error]:
    """The broker's visibility timeout must outlast any task run and any retry countdown:
    a message redelivered while the first worker still runs it, or still waits to retry
    it, is done twice at once."""
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", {}) or {}
    visibility = options.get("visibility_timeout", 3600)
    errors = []
    if visibility <= settings.CELERY_TASK_TIME_LIMIT:
        errors.append(
            Error(
                f"The broker's visibility_timeout ({visibility} s) must exceed "
                f"CELERY_TASK_TIME_LIMIT ({settings.CELERY_TASK_TIME_LIMIT} s).",
                hint="Raise CELERY_VISIBILITY_TIMEOUT or lower CELERY_TASK_TIME_LIMIT.",
                id="core.E001",
            )
        )
    if visibility <= RETRY_BACKOFF_MAX:
        errors.append(
            Error(
                f"The broker's visibility_timeout ({visibility} s) must exceed the longest "
                f"retry countdown ({RETRY_BACKOFF_MAX} s, core.tasks.RETRY_BACKOFF_MAX).",
                hint="Raise CELERY_VISIBILITY_TIMEOUT.",
                id="core.E002",
            )
        )
    return errors


@register(Tags.security, deploy=True)
def portal_deploy_checks(app_configs, **kwargs):
    problems = []
    if settings.SANDBOX_ALLOWED:
        problems.append(
            Error(
                "SANDBOX_ALLOWED is on: the test-mode provider and its checkout pages, which "
                "mark invoices paid without taking money, would run in production.",
                hint="Unset SANDBOX_ALLOWED (it is for tests and load runs).",
                id="portal.E001",
            )
        )
    if settings.PAYMENT_PROVIDER == "stripe" and not settings.STRIPE_WEBHOOK_SECRET:
        problems.append(
            Error(
                "PAYMENT_PROVIDER is stripe but STRIPE_WEBHOOK_SECRET is empty: every event "
                "at /stripe/ would be refused and no payment would ever be confirmed.",
                hint="Set STRIPE_WEBHOOK_SECRET to the endpoint's whsec_… secret.",
                id="portal.E002",
            )
        )
    if settings.PAYMENT_PROVIDER == "stripe" and not settings.STRIPE_SECRET_KEY:
        problems.append(
            Error(
                "PAYMENT_PROVIDER is stripe but STRIPE_SECRET_KEY is empty.",
                hint="Set STRIPE_SECRET_KEY to the account's sk_live_… key.",
                id="portal.E003",
            )
        )
    if settings.RAZORPAY_KEY_ID and not (
        settings.RAZORPAY_KEY_SECRET and settings.RAZORPAY_WEBHOOK_SECRET
    ):
        problems.append(
            Error(
                "RAZORPAY_KEY_ID is set (INR invoices are paid through Razorpay) but "
                "RAZORPAY_KEY_SECRET or RAZORPAY_WEBHOOK_SECRET is empty: links could not be "
                "made, or every event at /razorpay/ would be refused.",
                hint="Set both, or unset RAZORPAY_KEY_ID.",
                id="portal.E004",
            )
        )
    if settings.SECURE_PROXY_SSL_HEADER and settings.TRUSTED_PROXY_HOPS == 0:
        problems.append(
            Warning(
                "A TLS proxy is configured (SECURE_PROXY_SSL_HEADER) but TRUSTED_PROXY_HOPS "
                "is 0: every client would have the proxy's address, and one guesser would "
                "lock everybody out of log-in and the API.",
                hint="Set TRUSTED_PROXY_HOPS to the number of proxies in front of gunicorn.",
                id="portal.W001",
            )
        )
    problems += _seller_identity_checks()
    return problems


# The demo's seller VAT id is deliberately not a valid number (a valid-looking one may be a
# real company's); production must print its own on every invoice and e-invoice.
DEMO_SELLER_VAT_ID = "DE811111111"


def _seller_identity_checks() -> list[Warning]:
    seller = settings.SELLER
    problems = []
    if seller["vat_id"] == DEMO_SELLER_VAT_ID or not vat.is_valid(seller["vat_id"]):
        problems.append(
            Warning(
                f"SELLER_VAT_ID {seller['vat_id']!r} is the demo's or fails its checksum: "
                "every invoice and e-invoice would print a VAT id the buyer's accountant "
                "rejects.",
                hint="Set SELLER_VAT_ID to the company's own USt-IdNr.",
                id="portal.W002",
            )
        )
    if not iban.is_valid(seller["iban"]):
        problems.append(
            Warning(
                f"SELLER_IBAN {seller['iban']!r} fails its checksum: transfers to it would bounce.",
                hint="Set SELLER_IBAN to the account invoices name for transfers.",
                id="portal.W003",
            )
        )
    return problems
