"""Exactly one Celery beat publishes the billing calendar, however many are started.

Every beat process holds (or waits for) one PostgreSQL session-level advisory lock on a
connection of its own. Only the holder publishes; the others tick on standby and try
again every STANDBY_SECONDS. The server releases the lock when the holder's session ends
(the process died, was killed, lost its network), so a standby takes over without anybody
having to clean up. Before publishing, the holder checks that its session is still alive:
a holder cut off from the database stops publishing, since the lock it had may be
someone else's by now.

A second beat therefore costs nothing (it is a hot standby), and a scheduling mistake in
deployment (beat started twice, `worker -B` on two hosts) no longer publishes every tick
twice. With another database than PostgreSQL (the SQLite demo) there is no lock and the
scheduler behaves like Celery's own.
"""

import hashlib
import logging

from celery.beat import PersistentScheduler
from django.db import DatabaseError, connections

logger = logging.getLogger(__name__)

# The advisory lock's key: a 64-bit number of our own (advisory locks are per database).
LOCK_KEY = int.from_bytes(
    hashlib.blake2b(b"ipv4-billing-portal:celery-beat", digest_size=8).digest(),
    "big",
    signed=True,
)
STANDBY_SECONDS = 15.0


class BeatLock:
    """The advisory lock, on a database connection that belongs to this beat alone."""

    def __init__(self, alias: str = "default") -> None:
        self.alias = alias
        self._conn = None
        self.held = False

    @property
    def supported(self) -> bool:
        return connections[self.alias].vendor == "postgresql"

    def acquire(self) -> bool:
        """True while this process holds the lock (checked on the server, every call)."""
        try:
            if self.held:
                self._query("SELECT 1")  # the session lives, so its lock does
                return True
            self.held = bool(self._query("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY]))
        except DatabaseError as exc:
            if self.held:
                logger.error("beat: lost the database session holding the beat lock (%s)", exc)
            self.close()
            return False
        if self.held:
            logger.warning("beat: holding the beat lock; this beat publishes the schedule")
        return self.held

    def close(self) -> None:
        """Release the lock (by ending its session) and forget the connection."""
        self.held = False
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except DatabaseError:
                logger.debug("beat: closing a broken lock connection", exc_info=True)

    def backend_pid(self) -> int | None:
        return (
            self._conn.connection.info.backend_pid if self._conn and self._conn.connection else None
        )

    def _query(self, sql: str, params: list | None = None):
        if self._conn is None:
            # Not connections[alias]: Django closes or reuses that one at will; this one must
            # live exactly as long as the lock it holds.
            self._conn = connections.create_connection(self.alias)
        with self._conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()[0]


class SingleBeatScheduler(PersistentScheduler):
    """Celery's file-backed scheduler that publishes only while it holds the beat lock."""

    def __init__(self, *args, **kwargs) -> None:
        self.beat_lock = BeatLock()
        super().__init__(*args, **kwargs)

    def tick(self, *args, **kwargs) -> float:
        if self.beat_lock.supported and not self.beat_lock.acquire():
            return STANDBY_SECONDS
        return super().tick(*args, **kwargs)

    def close(self) -> None:
        super().close()
        self.beat_lock.close()
