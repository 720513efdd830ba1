"""`manage.py check --deploy` checks of the portal's own settings (docs/security.md)."""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register


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
    return problems
