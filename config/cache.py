"""Django's Redis cache behind a circuit breaker: a stalled Redis costs a request one short
timeout, and then nothing for a while.

Every use of the cache in the portal is an optimisation or fails open (sessions fall back to
the database, list caches compute, rate limits let the request through), so a cache that
cannot answer must answer *quickly*. The socket timeouts (settings CACHE_CONNECT_TIMEOUT,
CACHE_SOCKET_TIMEOUT) bound one call; the breaker bounds how often calls are made while
Redis is down: after a failure every call fails at once with CacheUnavailable for
CACHE_BREAKER_SECONDS, then one call is let through to try Redis again (the others keep
failing fast meanwhile); its success closes the breaker.

The breaker's state is per process (per gunicorn worker, per Celery worker), shared by its
threads: each process pays at most one stall per period, plus one per thread that was
already waiting on Redis when it stopped answering.
"""

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache.backends.redis import RedisCache
from django.utils.functional import cached_property

logger = logging.getLogger(__name__)


class CacheUnavailable(ConnectionError):
    """The breaker is open: Redis failed moments ago and is not asked again yet."""


class CircuitBreaker:
    def __init__(self, name: str, *, cooldown: float) -> None:
        self.name = name
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._open_until = 0.0
        self._tripped = False

    def before_call(self) -> None:
        """Raise CacheUnavailable while open; let one caller through once the cooldown ended."""
        now = time.monotonic()
        with self._lock:
            if not self._tripped:
                return
            if now < self._open_until:
                raise CacheUnavailable(f"{self.name} skipped after a failure (circuit open)")
            # This caller is the trial; everyone else stays out until it has answered.
            self._open_until = now + self.cooldown

    def succeeded(self) -> None:
        if self._tripped:
            with self._lock:
                if self._tripped:
                    logger.warning("%s answers again; circuit closed", self.name)
                self._tripped = False
                self._open_until = 0.0

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            if not self._tripped:
                logger.error(
                    "%s failed (%s); skipped for %s s", self.name, exc or type(exc), self.cooldown
                )
            self._tripped = True
            self._open_until = time.monotonic() + self.cooldown

    @property
    def is_open(self) -> bool:
        return self._tripped


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(location: str) -> CircuitBreaker:
    """The process's breaker of one Redis server (caches on the same server share it)."""
    with _breakers_lock:
        breaker = _breakers.get(location)
        if breaker is None:
            breaker = _breakers[location] = CircuitBreaker(
                "cache (Redis)", cooldown=settings.CACHE_BREAKER_SECONDS
            )
        return breaker


def reset_breakers() -> None:
    """Forget every breaker's state (tests)."""
    with _breakers_lock:
        _breakers.clear()


class _GuardedClient:
    """Django's RedisCacheClient with every call going through the breaker."""

    def __init__(self, client: Any, breaker: CircuitBreaker) -> None:
        self._client = client
        self._breaker = breaker

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr
        breaker, failures = self._breaker, self._failures()

        def guarded(*args, **kwargs):
            breaker.before_call()
            try:
                result = attr(*args, **kwargs)
            except failures as exc:
                breaker.failed(exc)
                raise
            breaker.succeeded()
            return result

        return guarded

    def _failures(self) -> tuple[type[BaseException], ...]:
        # A missing key for incr() (ValueError) is an answer, not a failure of Redis.
        return (self._client._lib.RedisError, OSError)


class ResilientRedisCache(RedisCache):
    @cached_property
    def _cache(self):
        return _GuardedClient(
            self._class(self._servers, **self._options), breaker_for(self._servers[0])
        )
