"""gunicorn in production: `gunicorn -c config/gunicorn.conf.py config.wsgi:application`.

Each value is chosen against the portal's own budgets; docs/operations.md gives the reasons.
Every value can be overridden on the command line or with GUNICORN_* variables below.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")

# Threads, not one request per process: a request that waits on the network (Stripe within
# its budget, a mail server, PostgreSQL behind a lock) holds one thread, and the other
# threads of the process keep serving. With sync workers every slow Stripe call took a
# whole worker. The portal's request path is thread-safe (Django, psycopg, redis-py, the
# cache breaker); each thread keeps its own database connection, so PostgreSQL's
# max_connections must cover workers x threads plus the Celery workers.
worker_class = "gthread"
workers = int(os.environ.get("GUNICORN_WORKERS", min(2 * multiprocessing.cpu_count() + 1, 9)))
threads = int(os.environ.get("GUNICORN_THREADS", 8))

# The longest a request may legitimately take is the web budget for Stripe (29 s at worst,
# config.settings.base) plus a little database work; 40 s is above that. A worker whose main
# loop stays silent for this long (wedged, e.g. stuck in a C call) is killed and replaced.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 40))
# A deploy or restart lets requests in flight finish within the same budget.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", 40))
# Behind the TLS proxy, which keeps connections to us open: above its idle timeout is not
# needed, below it just costs reconnects.
keepalive = 5
# Recycle workers now and then (jittered so they do not restart together): bounds any slow
# leak without a visible restart.
max_requests = 2000
max_requests_jitter = 200

accesslog = "-"
errorlog = "-"
