"""Where benchmarks may write: scratch databases and a scratch Redis database only.

Benchmarks drop and rebuild their databases, so they never take DATABASE_URL or
CELERY_BROKER_URL from the environment (that is where the real ones live). They read
BENCH_DATABASE_URL / BENCH_BROKER_URL instead, and refuse a database whose name does not
start with "portal_bench".
"""

import os
import subprocess
import sys
from urllib.parse import urlparse

PREFIX = "portal_bench"


def use_scratch(default_name: str) -> str:
    """Point this process at the scratch database (and Redis db 9); returns the db name."""
    url = os.environ.get("BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{default_name}")
    name = urlparse(url).path.lstrip("/")
    if not name.startswith(PREFIX):
        sys.exit(f"refusing to benchmark in {name!r}: scratch databases start with {PREFIX!r}")
    os.environ["DATABASE_URL"] = url
    os.environ["CELERY_BROKER_URL"] = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    return name


def own_session() -> None:
    """Re-run this script as the leader of a session of its own, and exit with its code.

    Linux's scheduler autogroups (kernel.sched_autogroup_enabled) share CPU equally between
    sessions, not processes. Worker processes a benchmark starts with start_new_session get
    a session each; the script itself shares one with whatever else its shell started (a
    test suite). On a busy machine that alone made the same billing code run twice as fast in
    a worker as in the script; with a session of its own, every measured process gets the
    same kind of share.
    """
    if os.getsid(0) == os.getpid() or os.environ.get("BENCH_OWN_SESSION"):
        return
    env = {**os.environ, "BENCH_OWN_SESSION": "1"}
    code = subprocess.run([sys.executable, *sys.argv], env=env, start_new_session=True).returncode
    sys.exit(code)


def load_average() -> str:
    """The machine's 1/5/15-minute load averages, printed with each result: the figures of
    a busy machine (other suites on the same two CPUs) read differently from a quiet one's."""
    return " / ".join(f"{x:.1f}" for x in os.getloadavg())
