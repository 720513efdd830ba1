"""Exactly one beat: two schedulers started against the same database, one publishes; when
its database session dies (pg_terminate_backend, as when its host goes away) the other
takes over, and the first stops publishing."""

import time

import psycopg
import pytest
from celery import beat
from django.db import connection

from config import beat as single_beat
from config.celery import app

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="advisory locks"),
]


@pytest.fixture
def published(monkeypatch):
    """Which scheduler got to run Celery's own tick (the one that sends due tasks)."""
    ticks: list[str] = []

    def tick(self, *args, **kwargs):
        ticks.append(self.name)
        return 1.0

    monkeypatch.setattr(beat.Scheduler, "tick", tick)
    return ticks


def _scheduler(name: str, tmp_path) -> single_beat.SingleBeatScheduler:
    scheduler = single_beat.SingleBeatScheduler(
        app=app, schedule_filename=str(tmp_path / name), lazy=True
    )
    scheduler.name = name
    return scheduler


def _end_session(pid: int) -> None:
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=db["NAME"],
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])


def _wait_until_released(pid: int) -> None:
    """A session's locks go when the server has finished ending it, a moment after the
    client closed (or the session was terminated)."""
    deadline = time.perf_counter() + 10
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = %s", [pid]
            )
            if cursor.fetchone()[0] == 0:
                return
        assert time.perf_counter() < deadline, "the lock was never released"
        time.sleep(0.01)


def test_a_second_beat_stands_by_and_takes_over_when_the_first_is_gone(tmp_path, published):
    first, second = _scheduler("first", tmp_path), _scheduler("second", tmp_path)
    try:
        for _ in range(3):
            assert first.tick() == 1.0
            assert second.tick() == single_beat.STANDBY_SECONDS
        assert published == ["first"] * 3

        holder = first.beat_lock.backend_pid()
        _end_session(holder)
        _wait_until_released(holder)
        published.clear()
        second.tick()
        first.tick()
        second.tick()
        assert published == ["second", "second"]
        assert not first.beat_lock.held
    finally:
        first.beat_lock.close()
        second.beat_lock.close()


def test_a_beat_that_stops_releases_the_lock(tmp_path, published):
    first, second = _scheduler("first", tmp_path), _scheduler("second", tmp_path)
    try:
        first.tick()
        second.tick()
        holder = first.beat_lock.backend_pid()
        first.beat_lock.close()  # what SingleBeatScheduler.close does on shutdown
        _wait_until_released(holder)
        second.tick()
        assert published == ["first", "second"]
    finally:
        first.beat_lock.close()
        second.beat_lock.close()
