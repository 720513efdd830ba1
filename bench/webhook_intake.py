"""Benchmark: Stripe events acknowledged per second through gunicorn, A/B against a trivial POST.

    .venv/bin/python bench/webhook_intake.py [--rounds 6] [--per-round 1200]
        [--clients 4] [--workers 4]

Recreates the scratch database `portal_bench_webhooks` (refuses any name outside the
`portal_bench` prefix), starts gunicorn (production settings plus one trivial POST view,
bench/webhook_intake_settings.py) with 4 sync workers on loopback, and alternates rounds
of A = POST /bench/trivial-post/ (reads the body, SELECT 1) and B = POST /stripe/ with a
fresh, correctly signed payment_intent.succeeded event per request (stored, apply task
published to Redis database 9, not run). The order alternates A B, B A, ... so drift hits
both alike. Every round's rate is printed, then medians, min-max spread and the ratio of
the medians. Afterwards it checks that every event was stored exactly once and answered 200.
"""

import argparse
import http.client
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.scratch import PREFIX  # noqa: E402
from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, event, load, sign  # noqa: E402

PY = sys.executable
DB_NAME = os.environ.get("BENCH_WEBHOOK_DB", "portal_bench_webhooks")
if not DB_NAME.startswith(PREFIX):
    sys.exit(f"refusing to benchmark in {DB_NAME!r}: scratch databases start with {PREFIX!r}")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/9")


def environment() -> dict:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="bench.webhook_intake_settings",
        DJANGO_SECRET_KEY="bench-only-" + "x" * 50,
        DJANGO_ALLOWED_HOSTS="127.0.0.1",
        DATABASE_URL=f"postgres://postgres@127.0.0.1:5432/{DB_NAME}",
        REDIS_URL=BROKER,
        CELERY_BROKER_URL=BROKER,
        DJANGO_SECURE_SSL_REDIRECT="false",
        PAYMENT_PROVIDER="stripe",
        STRIPE_SECRET_KEY="sk_test_" + "b" * 24,
        STRIPE_API_BASE="https://api.stripe.invalid",
        STRIPE_WEBHOOK_SECRET=WEBHOOK_SECRET,
        LOG_LEVEL="WARNING",
    )
    return env


def recreate_database() -> None:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(BROKER).flushdb()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            post(port, [("/bench/trivial-post/", "{}", {})])
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("gunicorn did not answer within 30 s")


def post(port: int, requests: list[tuple[str, str, dict]]) -> list[int]:
    """Send each request on a new connection (gunicorn's sync workers close after each)."""
    statuses = []
    for path, body, headers in requests:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request(
            "POST", path, body=body, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        conn.close()
    return statuses


def _client(job: tuple[int, list[tuple[str, str, dict]]]) -> list[int]:
    port, requests = job
    return post(port, requests)


_serial = iter(range(10**9))


def stripe_requests(n: int) -> list[tuple[str, str, dict]]:
    """n distinct events, signed just before the round (the signature's 300 s tolerance)."""
    out = []
    for _ in range(n):
        k = next(_serial)
        intent = load(
            "payment_intent",
            id=f"pi_bench_{k}",
            amount=41650,
            amount_received=41650,
            currency="eur",
            metadata={"invoice_id": str(k), "payment_id": str(k)},
            status="succeeded",
            latest_charge=f"ch_bench_{k}",
        )
        body = json.dumps(event("payment_intent.succeeded", intent, event_id=f"evt_bench_{k}"))
        out.append(("/stripe/", body, {"Stripe-Signature": sign(body)}))
    return out


def trivial_requests(n: int) -> list[tuple[str, str, dict]]:
    # Same body size as an event, so the only difference is what the view does with it.
    body = stripe_requests(1)[0][1]
    return [("/bench/trivial-post/", body, {}) for _ in range(n)]


def run_round(pool, port: int, requests: list, clients: int) -> float:
    slices = [(port, requests[i::clients]) for i in range(clients)]
    started = time.perf_counter()
    results = pool.map(_client, slices)
    elapsed = time.perf_counter() - started
    statuses = [s for r in results for s in r]
    bad = [s for s in statuses if s != 200]
    if bad:
        raise SystemExit(f"{len(bad)} non-200 answers ({sorted(set(bad))}); not measuring")
    return len(statuses) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6, help="A/B pairs")
    parser.add_argument("--per-round", type=int, default=1200, help="requests per round")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    args = parser.parse_args()

    env = environment()
    recreate_database()
    flush_broker()
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env,
                   check=True)  # fmt: skip
    gunicorn = Path(PY).with_name("gunicorn")
    port = free_port()
    proc = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "-w", str(args.workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    print(f"gunicorn pid {proc.pid}, {args.workers} sync workers on 127.0.0.1:{port}", flush=True)
    rates: dict[str, list[float]] = {"trivial POST": [], "POST /stripe/": []}
    sent = 0
    try:
        wait_ready(port, proc)
        with multiprocessing.Pool(args.clients) as pool:
            # Warm-up: every worker has imported, connected and verified once.
            run_round(pool, port, trivial_requests(200), args.clients)
            run_round(pool, port, stripe_requests(200), args.clients)
            sent += 200
            for i in range(args.rounds):
                order = ["trivial POST", "POST /stripe/"]
                if i % 2:
                    order.reverse()
                for name in order:
                    if name == "trivial POST":
                        requests = trivial_requests(args.per_round)
                    else:
                        requests = stripe_requests(args.per_round)
                        sent += len(requests)
                    rate = run_round(pool, port, requests, args.clients)
                    rates[name].append(rate)
                    print(f"round {i + 1} {name:14s} {rate:8,.0f} req/s", flush=True)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        print(f"gunicorn {proc.pid} stopped", flush=True)
    check = subprocess.run(
        [PY, "-c", "import django; django.setup(); from billing.payments.models import "
         "WebhookEvent as W; print(W.objects.count(), W.objects.filter(deliveries__gt=1).count(),"
         " W.objects.exclude(status='received').count())"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip
    flush_broker()
    print()
    print(
        f"{args.rounds} interleaved A/B rounds of {args.per_round} requests, "
        f"{args.clients} client processes, gunicorn {args.workers} sync workers"
    )
    print(f"{'':16s} {'median':>9s} {'min':>9s} {'max':>9s}  (req/s)")
    for name, values in rates.items():
        print(
            f"{name:16s} {statistics.median(values):9,.0f} {min(values):9,.0f} {max(values):9,.0f}"
        )
    a, b = (statistics.median(v) for v in rates.values())
    pair = [t / s for t, s in zip(rates["trivial POST"], rates["POST /stripe/"], strict=True)]
    print(
        f"trivial / webhook: {a / b:.2f}x (median of rates); per round "
        f"{min(pair):.2f}x-{max(pair):.2f}x"
    )
    stored, redelivered, applied = (int(x) for x in check)
    print(f"events sent {sent:,}, stored {stored:,}, redelivered {redelivered}, applied {applied}")
    if stored != sent or redelivered or applied:
        raise SystemExit("stored events do not match what was sent")


if __name__ == "__main__":
    main()
