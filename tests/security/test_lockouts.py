"""Lockouts that cannot lock out the innocent: the client address behind trusted proxies,
valid tokens before the lock, and staff who see and lift lockouts."""

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import RequestFactory

from contracts.auth import client_ip
from contracts.models import Lockout, LockoutKind
from core.models import AuditEntry
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PROXY = "10.0.0.2"  # the TLS proxy: every request's REMOTE_ADDR behind it
LIMIT = 5


def _request(xff: str | None = None, remote: str = PROXY):
    meta = {"REMOTE_ADDR": remote}
    if xff is not None:
        meta["HTTP_X_FORWARDED_FOR"] = xff
    return RequestFactory().get("/", **meta)


@pytest.mark.parametrize(
    ("hops", "xff", "expected"),
    [
        (0, "203.0.113.5", PROXY),  # no trusted proxy: the header is anybody's
        (1, None, PROXY),  # came around the proxy
        (1, "203.0.113.5", "203.0.113.5"),
        (1, "1.1.1.1, 203.0.113.5", "203.0.113.5"),  # the client's own entry is not believed
        (1, "1.1.1.1,203.0.113.5 ", "203.0.113.5"),
        (2, "1.1.1.1, 203.0.113.5, 10.0.0.1", "203.0.113.5"),
        (2, "203.0.113.5", "203.0.113.5"),  # fewer entries than proxies: all are ours
        (1, "203.0.113.5:51234", "203.0.113.5"),
        (1, "[2001:db8::1]:443", "2001:db8::1"),
        (1, "2001:DB8::1", "2001:db8::1"),
        (1, "unknown", PROXY),
        (1, "", PROXY),
    ],
)
def test_client_ip_counts_trusted_proxy_hops(settings, hops, xff, expected):
    settings.TRUSTED_PROXY_HOPS = hops
    assert client_ip(_request(xff)) == expected


def _login(client, username, password, xff):
    return client.post(
        "/accounts/login/",
        {"username": username, "password": password},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=xff,
    )


@pytest.fixture
def admin_user(db):
    return UserFactory(username="admin", is_staff=True, is_superuser=True)


def test_wrong_passwords_for_admin_from_one_address_lock_only_that_address(
    client, settings, admin_user
):
    settings.TRUSTED_PROXY_HOPS = 1
    for _ in range(LIMIT):
        _login(client, "admin", "wrong", "198.51.100.66")
    assert _login(client, "admin", "pw", "198.51.100.66").status_code == 429
    # A forged X-Forwarded-For does not move the attacker to another address.
    assert _login(client, "admin", "pw", "192.0.2.1, 198.51.100.66").status_code == 429
    # The real admin, elsewhere, behind the same proxy, logs in.
    assert _login(client, "admin", "pw", "203.0.113.7").status_code == 302


def test_without_the_hops_setting_everybody_behind_the_proxy_shares_one_lock(
    client, settings, admin_user
):
    """What the setting is for: with 0 hops the proxy's address is everybody's."""
    settings.TRUSTED_PROXY_HOPS = 0
    for _ in range(LIMIT):
        _login(client, "admin", "wrong", "198.51.100.66")
    assert _login(client, "admin", "pw", "203.0.113.7").status_code == 429


def _api(client, secret, xff):
    return client.get(
        "/api/invoices/",
        headers={"Authorization": f"Bearer {secret}"},
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR=xff,
    )


def test_junk_tokens_lock_the_guesser_not_every_integration(client, settings, world):
    settings.TRUSTED_PROXY_HOPS = 1
    settings.API_TOKEN_FAILURE_LIMIT = 3
    for _ in range(3):
        _api(client, "junk", "198.51.100.66")
    assert _api(client, "junk", "198.51.100.66").status_code == 429
    assert _api(client, "junk", "203.0.113.7").status_code == 401  # another client guesses anew
    assert _api(client, world.token_secret, "203.0.113.7").status_code == 200
    # A valid token works even from the locked address (an integration behind the same NAT).
    assert _api(client, world.token_secret, "198.51.100.66").status_code == 200


def test_lockouts_are_recorded_and_billing_staff_lift_them(client, settings, admin_user):
    settings.TRUSTED_PROXY_HOPS = 1
    for _ in range(LIMIT):
        _login(client, "admin", "wrong", "198.51.100.66")
    lockout = Lockout.objects.get()
    assert (lockout.kind, lockout.identity) == (LockoutKind.LOGIN, "admin|198.51.100.66")
    assert lockout.failures == LIMIT

    support = UserFactory(username="support", is_staff=True)
    support.groups.add(Group.objects.get(name="Support (read-only)"))
    client.force_login(support)
    page = client.get("/admin/contracts/lockout/?state=active")
    assert "admin|198.51.100.66" in page.content.decode()
    client.post("/admin/contracts/lockout/", {"action": "clear", "_selected_action": [lockout.pk]})
    assert Lockout.objects.exists(), "support may look, not lift"

    staff = UserFactory(username="billing", is_staff=True)
    staff.groups.add(Group.objects.get(name="Billing staff"))
    client.force_login(staff)
    client.post("/admin/contracts/lockout/", {"action": "clear", "_selected_action": [lockout.pk]})
    assert not Lockout.objects.exists()
    assert AuditEntry.objects.filter(action="lockout.cleared", actor_label="billing").exists()
    client.logout()
    assert _login(client, "admin", "pw", "198.51.100.66").status_code == 302


def test_lockouts_command_lists_and_lifts(client, settings, world, capsys):
    settings.API_TOKEN_FAILURE_LIMIT = 2
    for _ in range(2):
        client.get("/api/invoices/", headers={"Authorization": "Bearer x"}, REMOTE_ADDR="10.7.7.7")
    for _ in range(LIMIT):
        client.post("/accounts/login/", {"username": "a", "password": "b"}, REMOTE_ADDR="10.7.7.8")
    call_command("lockouts")
    listed = capsys.readouterr().out
    assert "api-token\t10.7.7.7" in listed and "login\ta|10.7.7.8" in listed
    assert "2 lockout(s) in force." in listed
    api = Lockout.objects.get(kind=LockoutKind.API_TOKEN)
    call_command("lockouts", "--clear", str(api.pk))
    assert (
        client.get(
            "/api/invoices/", headers={"Authorization": "Bearer x"}, REMOTE_ADDR="10.7.7.7"
        ).status_code
        == 401
    )
    call_command("lockouts", "--clear-all")
    assert not Lockout.objects.exists()
    assert "Lifted 1 lockout(s)." in capsys.readouterr().out
