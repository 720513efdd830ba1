"""Run jobs in threads that start together, for the PostgreSQL race tests."""

import threading

from django.db import connections


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
