import datetime

import pytest
import time_machine
from django.conf import settings

LIMIT = 5


def _login(client, username, password, ip="10.1.1.1"):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip
    )


def _fail(client, username, times, ip="10.1.1.1"):
    for _ in range(times):
        assert _login(client, username, "wrong", ip).status_code == 200


def _lock(client, username):
    _fail(client, username, LIMIT - 1)
    assert _login(client, username, "wrong").status_code == 429


def test_five_failures_lock_even_the_right_password(client, owner):
    _fail(client, owner.username, LIMIT - 1)
    locked = _login(client, owner.username, "wrong")
    assert locked.status_code == 429
    assert "Too many failed log-in attempts" in locked.content.decode()
    assert "15 minutes" in locked.content.decode()
    response = _login(client, owner.username, "pw")
    assert response.status_code == 429
    assert "_auth_user_id" not in client.session


def test_lock_lifts_after_fifteen_minutes(client, owner):
    start = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        _lock(client, owner.username)
        traveller.shift(datetime.timedelta(minutes=14))
        assert _login(client, owner.username, "pw").status_code == 429
        traveller.shift(datetime.timedelta(minutes=1, seconds=1))
        assert _login(client, owner.username, "pw").status_code == 302


def test_failures_outside_the_window_do_not_add_up(client, owner):
    start = datetime.datetime(2026, 3, 1, 12, 0, tzinfo=datetime.UTC)
    with time_machine.travel(start, tick=False) as traveller:
        _fail(client, owner.username, LIMIT - 1)
        traveller.shift(datetime.timedelta(minutes=16))
        _fail(client, owner.username, LIMIT - 1)
        assert _login(client, owner.username, "pw").status_code == 302


def test_success_resets_the_count(client, owner):
    _fail(client, owner.username, LIMIT - 1)
    assert _login(client, owner.username, "pw").status_code == 302
    client.logout()
    _fail(client, owner.username, LIMIT - 1)
    assert _login(client, owner.username, "pw").status_code == 302


def test_lock_is_per_username_and_address(client, owner):
    _lock(client, owner.username)
    # Another address can still log in: an attacker cannot lock the customer out everywhere.
    assert _login(client, owner.username, "pw", ip="10.2.2.2").status_code == 302
    client.logout()
    # The username is matched case-insensitively, so case games do not reset the count.
    assert _login(client, owner.username.upper(), "pw").status_code == 429


def test_unknown_usernames_are_throttled_too(client, db):
    _fail(client, "nobody@example.com", LIMIT - 1)
    assert _login(client, "nobody@example.com", "x").status_code == 429


def test_admin_login_is_throttled(client, staff):
    for _ in range(LIMIT):
        client.post("/admin/login/?next=/admin/", {"username": "staff", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "staff", "password": "pw"})
    assert response.status_code == 200
    assert "Too many failed log-in attempts" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_cache_outage_does_not_lock_everyone_out(client, owner, monkeypatch):
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("redis down")

    for name in ("get", "add", "incr", "set", "delete_many"):
        monkeypatch.setattr(cache, name, broken)
    for _ in range(LIMIT + 1):
        assert _login(client, owner.username, "wrong").status_code == 200
    assert _login(client, owner.username, "pw").status_code == 302


@pytest.fixture
def api_limit(settings):
    settings.API_TOKEN_FAILURE_LIMIT = 3
    return 3


def test_api_invalid_tokens_lock_the_address(client, world, api_limit):
    def call(secret, ip="10.9.9.9"):
        return client.get(
            "/api/invoices/", headers={"Authorization": f"Bearer {secret}"}, REMOTE_ADDR=ip
        )

    for _ in range(api_limit - 1):
        assert call("guess").status_code == 401
    locked = call("guess")
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "too_many_invalid_tokens"
    assert int(locked["Retry-After"]) == settings.LOGIN_LOCKOUT_SECONDS
    # Guesses keep meeting the lock; the right token works from that address all along.
    assert call("another-guess").status_code == 429
    assert call(world.token_secret).status_code == 200
    assert call(world.token_secret, ip="10.8.8.8").status_code == 200


def test_api_missing_or_revoked_tokens_are_not_guesses(client, world, api_limit):
    from billing.api.tokens import token_revoke

    token_revoke(token_id=world.other_token.pk, membership=world.other, actor="t")
    for _ in range(api_limit + 1):
        assert client.get("/api/invoices/").status_code == 401
        response = client.get(
            "/api/invoices/", headers={"Authorization": f"Bearer {world.other_token_secret}"}
        )
        assert response.status_code == 401
    ok = client.get("/api/invoices/", headers={"Authorization": f"Bearer {world.token_secret}"})
    assert ok.status_code == 200
