"""Sessions read from the cache and written through to the database, surviving a cache outage.

Django's cached_db engine saves a database round trip on every page (the session comes
from Redis), but it lets a cache error through while loading a session that was not
cached, checking a new key and logging out, so a Redis outage would log everyone out or
answer 500. Here a failing cache is a miss: the database answers, as it does for any
uncached session.

A session is kept in the cache for at most CACHE_SECONDS, not its whole age. If the cache
is unreachable at the moment of a logout, the database row is deleted but the cached copy
cannot be; the cap bounds how long that copy could still be read once the cache is back.
"""

import logging

from django.contrib.sessions.backends import cached_db

logger = logging.getLogger(__name__)

CACHE_SECONDS = 300


class _TolerantCache:
    """The few cache calls cached_db makes, with errors logged and treated as misses."""

    def __init__(self, cache) -> None:
        self._cache = cache

    def get(self, key, default=None):
        try:
            return self._cache.get(key, default)
        except Exception:
            logger.exception("session cache unavailable")
            return default

    def set(self, key, value, timeout=None) -> None:
        timeout = CACHE_SECONDS if timeout is None else min(timeout, CACHE_SECONDS)
        try:
            self._cache.set(key, value, timeout)
        except Exception:
            logger.exception("session cache unavailable")

    def delete(self, key) -> None:
        try:
            self._cache.delete(key)
        except Exception:
            logger.exception("session cache unavailable; a cached copy may live on briefly")

    def __contains__(self, key) -> bool:
        try:
            return key in self._cache
        except Exception:
            logger.exception("session cache unavailable")
            return False


class SessionStore(cached_db.SessionStore):
    def __init__(self, session_key=None) -> None:
        super().__init__(session_key)
        self._cache = _TolerantCache(self._cache)
