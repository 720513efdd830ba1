"""Run jobs in threads that start together, for the PostgreSQL race tests."""

import threading
import time

from django.db import connection, connections


def run_together(*jobs, timeout: float = 30) -> tuple[list, list[BaseException]]:
    """Start every job at the same moment; returns (results, errors) once all have ended.

    Fails the test, rather than hanging it, when a job is still running after `timeout`
    seconds (a deadlock or a lock nobody releases).
    """
    barrier = threading.Barrier(len(jobs))
    results: list = [None] * len(jobs)
    errors: list[BaseException] = []

    def run(i, job):
        try:
            barrier.wait(timeout)
            results[i] = job()
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    stuck = [t for t in threads if t.is_alive()]
    assert not stuck, f"{len(stuck)} job(s) still running after {timeout} s"
    return results, errors


def wait_until_blocked_on_lock(*, sessions: int = 1, timeout: float = 10) -> None:
    """Return once `sessions` connections to this database wait for a lock (pg_stat_activity).

    Called from its own thread (e.g. a job of run_together) so it has its own connection;
    polls in real time: the test's clock may be frozen by time_machine.
    """
    deadline = time.monotonic() + timeout
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            (waiting,) = cursor.fetchone()
        if waiting >= sessions:
            return
        assert time.monotonic() < deadline, f"no session blocked on a lock after {timeout} s"
        time.sleep(0.01)


class Pause:
    """Stop a thread at a chosen point (inside its transaction) until the test lets it go.

    `wrap(func)` returns func that, after running, signals `reached` and waits for `go`;
    `when` limits the pause to matching calls.
    """

    def __init__(self, timeout: float = 10) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()
        self.timeout = timeout

    def wrap(self, func, when=lambda *args, **kwargs: True):
        def paused(*args, **kwargs):
            result = func(*args, **kwargs)
            if when(*args, **kwargs) and not self.reached.is_set():
                self.reached.set()
                assert self.go.wait(self.timeout), "the paused thread was never let go"
            return result

        return paused
