"""Password-reset throttling, Cache-Control: private on signed-in pages, the portal's
`check --deploy` checks, and error reports without the passwords inside URLs."""

import datetime
import sys

import pytest
import time_machine
from django.conf import settings
from django.core import mail
from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter

from core.checks import portal_deploy_checks
from core.reporting import CredentialHidingReporterFilter, hide_url_credentials
from tests.factories import UserFactory
from tests.security.prod import run

pytestmark = pytest.mark.django_db


# --- Password reset -----------------------------------------------------------------


def _reset(client, email, ip="10.3.3.3"):
    return client.post("/accounts/password_reset/", {"email": email}, REMOTE_ADDR=ip)


@pytest.fixture
def person(db):
    return UserFactory(username="pat", email="pat@example.com")


def test_reset_mails_per_email_address_are_limited_quietly(client, settings, person):
    settings.PASSWORD_RESET_LIMIT_PER_EMAIL = 3
    answers = [_reset(client, "pat@example.com", ip=f"10.3.3.{n}") for n in range(6)]
    # The same "check your inbox" answer every time, so nobody learns anything from it.
    assert [r.status_code for r in answers] == [302] * 6
    assert {r["Location"] for r in answers} == {"/accounts/password_reset/done/"}
    assert len(mail.outbox) == 3
    # Case does not open a new allowance.
    _reset(client, "PAT@example.com")
    assert len(mail.outbox) == 3


def test_reset_requests_per_client_address_are_limited_with_a_message(client, settings, person):
    settings.PASSWORD_RESET_LIMIT_PER_ADDRESS = 4
    for n in range(4):
        assert _reset(client, f"someone{n}@example.com").status_code == 302
    refused = _reset(client, "pat@example.com")
    assert refused.status_code == 429
    assert "Too many password reset requests" in refused.content.decode()
    assert mail.outbox == []
    # Another address is unaffected.
    assert _reset(client, "pat@example.com", ip="10.4.4.4").status_code == 302
    assert len(mail.outbox) == 1


def test_reset_allowance_returns_after_the_window(client, settings, person):
    settings.PASSWORD_RESET_LIMIT_PER_EMAIL = 1
    start = datetime.datetime(2026, 6, 5, 12, tzinfo=datetime.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        _reset(client, "pat@example.com")
        _reset(client, "pat@example.com")
        assert len(mail.outbox) == 1
        traveller.shift(datetime.timedelta(hours=1, seconds=1))
        _reset(client, "pat@example.com")
        assert len(mail.outbox) == 2


# --- Cache-Control -----------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/invoices/", "/contracts/", "/payment-methods/", "/settings/tokens/", "/admin/"]
)
def test_signed_in_pages_are_private(client, world, path):
    client.force_login(world.owner.user if path != "/admin/" else _staff())
    response = client.get(path)
    assert response.status_code == 200
    assert "private" in response["Cache-Control"]
    assert "public" not in response["Cache-Control"]


def _staff():
    return UserFactory(username="root", is_staff=True, is_superuser=True)


def test_a_stricter_header_of_a_view_is_kept(client, world):
    client.force_login(world.owner.user)
    response = client.get("/invoices/export.csv")
    assert response["Cache-Control"] == "private, no-store"


def test_anonymous_pages_are_not_marked_private(client, db):
    response = client.get("/accounts/password_reset/")
    assert response.status_code == 200
    assert "private" not in response.get("Cache-Control", "")


# --- check --deploy -----------------------------------------------------------------


SAFE = {
    "SANDBOX_ALLOWED": False,
    "PAYMENT_PROVIDER": "stripe",
    "STRIPE_SECRET_KEY": "sk_live_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
    "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
    "TRUSTED_PROXY_HOPS": 1,
}


def _ids(**changes) -> set[str]:
    # The demo's seller VAT id is invalid on purpose (portal.W002); production sets its own.
    seller = {**settings.SELLER, "vat_id": "DE811111113"}
    with override_settings(**{**SAFE, "SELLER": seller, **changes}):
        return {problem.id for problem in portal_deploy_checks(None)}


def test_deploy_checks_pass_a_sound_configuration():
    assert _ids() == set()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"SANDBOX_ALLOWED": True}, "portal.E001"),
        ({"STRIPE_WEBHOOK_SECRET": ""}, "portal.E002"),
        ({"STRIPE_SECRET_KEY": ""}, "portal.E003"),
        ({"TRUSTED_PROXY_HOPS": 0}, "portal.W001"),
        ({"SELLER": {**settings.SELLER, "vat_id": "DE811111111"}}, "portal.W002"),
        ({"SELLER": {**settings.SELLER, "vat_id": "DE811111113", "iban": "DE00"}}, "portal.W003"),
    ],
)
def test_deploy_checks_name_each_problem(changes, expected):
    assert _ids(**changes) == {expected}


def test_sandbox_provider_needs_no_stripe_secrets():
    assert _ids(PAYMENT_PROVIDER="sandbox", STRIPE_SECRET_KEY="", STRIPE_WEBHOOK_SECRET="") == set()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SANDBOX_ALLOWED": "true"}, "portal.E001"),
        ({"STRIPE_WEBHOOK_SECRET": ""}, "portal.E002"),
    ],
)
def test_check_deploy_fails_in_production(env, expected):
    result = run("manage.py", "check", "--deploy", env=env)
    assert result.returncode != 0
    assert expected in result.stderr + result.stdout


# --- Error reports -----------------------------------------------------------------

SECRET = "s3cr3t-p@ss:word"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"redis://:{SECRET}@redis.internal:6379/0",
            "redis://:********************@redis.internal:6379/0",
        ),
        (f"redis://default:{SECRET}@r:6379/1", "redis://default:********************@r:6379/1"),
        (f"postgres://app:{SECRET}@db/portal", "postgres://app:********************@db/portal"),
        ("redis://redis.internal:6379/0", "redis://redis.internal:6379/0"),
        ("https://example.com:443/a@b", "https://example.com:443/a@b"),
    ],
)
def test_url_credentials_are_hidden(url, shown):
    assert hide_url_credentials(url) == shown


def test_error_report_carries_no_url_password(settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"redis://:{SECRET}@redis.internal:6379/0",
        }
    }
    settings.CELERY_BROKER_URL = f"redis://:{SECRET}@redis.internal:6379/1"
    request = RequestFactory().get("/", REDIS_URL=f"redis://:{SECRET}@redis.internal:6379/0")
    request.user = UserFactory.build()
    broker_url = settings.CELERY_BROKER_URL  # a frame variable holding the URL
    try:
        raise ConnectionError(f"cannot reach broker at {broker_url.split('@')[-1]}")
    except ConnectionError:
        reporter = ExceptionReporter(request, *sys.exc_info())
        text = reporter.get_traceback_text()
        html = reporter.get_traceback_html()
    assert isinstance(reporter.filter, CredentialHidingReporterFilter)
    for report in (text, html):
        assert SECRET not in report
        assert "s3cr3t" not in report
    assert "redis.internal:6379/1" in text, "the host stays visible"
