"""Fault injection: a Redis that accepts connections and never answers (a paused server).

Pages must not hang on it: each call gives up after the socket timeout, and the circuit
breaker skips the cache for a while after a failure, so a request pays that stall at most
once per period. The server is a socket this test starts, never the shared Redis.
"""

import contextlib
import datetime
import threading
import time

import pytest
import time_machine
from django.core.cache import cache
from django.test import Client

from config.cache import CacheUnavailable, CircuitBreaker, reset_breakers
from tests.factories import make_invoice
from tests.faults.servers import SilentServer

pytestmark = pytest.mark.django_db

BREAKER_SECONDS = 15
SOCKET_TIMEOUT = 0.5


@pytest.fixture
def silent_redis(settings):
    with SilentServer() as server:
        settings.CACHES = {
            "default": {
                "BACKEND": "config.cache.ResilientRedisCache",
                "LOCATION": f"redis://127.0.0.1:{server.port}/0",
                "OPTIONS": {"socket_connect_timeout": 0.25, "socket_timeout": SOCKET_TIMEOUT},
            }
        }
        settings.CACHE_BREAKER_SECONDS = BREAKER_SECONDS
        reset_breakers()
        yield server
    reset_breakers()


def _timed_get(client: Client, path: str) -> tuple[int, float]:
    started = time.perf_counter()  # real time: time_machine holds the monotonic clock
    status = client.get(path).status_code
    return status, time.perf_counter() - started


def test_a_paused_redis_costs_one_short_stall_per_period(silent_redis, customer, owner):
    make_invoice(customer=customer, started_on=datetime.date.today())
    client = Client()
    client.force_login(owner)
    with time_machine.travel(datetime.datetime(2026, 6, 5, 12, tzinfo=datetime.UTC)) as clock:
        status, first = _timed_get(client, "/invoices/")
        assert status == 200
        assert silent_redis.got_data.is_set(), "the request did ask the (silent) Redis"
        # Connect is instant, the answer never comes: one socket timeout, then the breaker.
        assert first < 4 * SOCKET_TIMEOUT, f"the first request stalled {first:.2f} s"

        asked = len(silent_redis.received)
        for path in ("/invoices/", "/accounts/login/", "/invoices/?status=open"):
            status, took = _timed_get(client, path)
            assert status == 200
            assert took < SOCKET_TIMEOUT, f"{path} waited {took:.2f} s on an open breaker"
        assert len(silent_redis.received) == asked, "Redis was asked while the breaker was open"

        clock.shift(BREAKER_SECONDS + 1)
        status, trial = _timed_get(client, "/invoices/")
        assert status == 200
        assert len(silent_redis.received) > asked, "after the period Redis is tried again"
        assert trial < 4 * SOCKET_TIMEOUT
        status, took = _timed_get(client, "/invoices/")
        assert status == 200 and took < SOCKET_TIMEOUT, "the failed trial opened it again"


def test_logging_in_works_while_redis_hangs(silent_redis, owner):
    client = Client()
    started = time.perf_counter()
    response = client.post("/accounts/login/", {"username": owner.username, "password": "pw"})
    assert response.status_code == 302
    assert client.get("/invoices/").status_code == 200
    assert time.perf_counter() - started < 4 * SOCKET_TIMEOUT


def test_a_cache_call_fails_within_the_socket_timeout(silent_redis):
    started = time.perf_counter()
    with pytest.raises(Exception) as raised:
        cache.get("anything")
    assert time.perf_counter() - started < 3 * SOCKET_TIMEOUT
    assert not isinstance(raised.value, CacheUnavailable), "the first call really tried"
    started = time.perf_counter()
    with pytest.raises(CacheUnavailable):
        cache.set("anything", 1)
    assert time.perf_counter() - started < 0.05


def test_after_the_period_one_caller_tries_while_the_others_still_skip():
    breaker = CircuitBreaker("test", cooldown=10)
    with time_machine.travel(datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC), tick=False) as t:
        breaker.failed(OSError("down"))
        with pytest.raises(CacheUnavailable):
            breaker.before_call()
        t.shift(11)
        breaker.before_call()  # the trial goes through ...
        with pytest.raises(CacheUnavailable):
            breaker.before_call()  # ... and the others keep skipping while it runs
        breaker.succeeded()
        breaker.before_call()
        assert not breaker.is_open


def test_threads_share_the_breaker(silent_redis):
    """One gunicorn process, many threads: once it opened, no thread waits on Redis."""
    with pytest.raises(Exception):
        cache.get("k")
    durations: list[float] = []

    def read() -> None:
        started = time.perf_counter()
        with contextlib.suppress(CacheUnavailable):
            cache.get("k")
        durations.append(time.perf_counter() - started)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(durations) == 8 and max(durations) < 0.1
