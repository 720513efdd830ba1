"""Benchmark: Stripe events acknowledged through gunicorn, and applied by Celery workers.

    .venv/bin/python bench/webhook_intake.py [--only intake,apply] [--rounds 6]
        [--per-round 1200] [--clients 4] [--workers 4] [--apply-rounds 4] [--apply-events 600]
        [--apply-customers 50] [--baseline /path/to/a/checkout/of/main]

Recreates the scratch database `portal_bench_webhooks` (refuses any name outside the
`portal_bench` prefix); broker and cache on Redis database 7 (BENCH_BROKER_URL overrides).

intake: two gunicorns (production settings plus one trivial POST view,
bench/webhook_intake_settings.py), 4 sync workers each, on loopback: "batched" with the
default STRIPE_WEBHOOK_APPLY_BATCH_SECONDS (one apply wake-up per window per process) and
"per-event" with 0 (one apply task published per event, the code before this change).
Rounds alternate A = POST /bench/trivial-post/ (reads the body, SELECT 1), B = POST /stripe/
batched, C = POST /stripe/ per-event (A B C, then C B A, ...), each request a fresh,
correctly signed payment_intent.succeeded event; tasks are published to Redis, not run.
Prints every round, then median, min-max per arm and the ratios to the trivial POST (of the
medians, and per round). Checks every event was stored once and none applied.

apply: two Celery worker processes (solo pool, production settings; worker 1 consumes
`apply1` and `apply2`, worker 2 only `apply2`). Each round stores --apply-events signed
payment_intent.succeeded events for pending checkout payments of open invoices (rows
written in bulk, as the endpoint leaves them; the invoices spread over --apply-customers
customers, no contracts) and times until every one is applied (the payment succeeded, the
invoice paid): "1 worker" publishes one apply_waiting_webhook_events to `apply1`,
"2 workers" one to `apply2` for each worker; rounds alternate. With --baseline, two more
workers run the code of that checkout (queues `bapply1`, `bapply2`) and its two arms join
the interleaved rounds (A/B in the same run; make one with
`git worktree add /tmp/base <commit>` or `git archive <commit> | tar -x -C /tmp/base`).
The follow-up tasks the applies publish go to the default queue, which no bench worker
consumes. Checks each payment was credited once (status, amount paid, one invoice.paid
audit entry per invoice).
"""

import argparse
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
from bench.scratch import PREFIX, load_average  # noqa: E402
from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, event, load, sign  # noqa: E402

PY = sys.executable
DB_NAME = os.environ.get("BENCH_WEBHOOK_DB", "portal_bench_webhooks")
if not DB_NAME.startswith(PREFIX):
    sys.exit(f"refusing to benchmark in {DB_NAME!r}: scratch databases start with {PREFIX!r}")
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")


def environment(**extra) -> dict:
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
        VIES_ENABLED="false",
        # Staff alerts and receipts go nowhere (a console backend would print each one).
        EMAIL_URL="dummymail://",
    )
    env.update(extra)
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


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited with {proc.returncode}")
        try:
            post(port, [raw_request("/bench/trivial-post/", "{}", {})])
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:.0f} s")


def raw_request(path: str, body: str, headers: dict) -> bytes:
    """A POST as bytes, built before the round: the client's own work per request is then
    a connect, a send and a read, so the 2 CPUs go to the server under test (http.client
    took about as much CPU per request as the trivial view itself)."""
    data = body.encode()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n{head}\r\n"
    ).encode() + data


def post(port: int, requests: list[bytes]) -> list[int]:
    """Send each request on a new connection (gunicorn's sync workers close after each)
    and read the answer to its end; the status of each."""
    statuses = []
    for raw in requests:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(raw)
            answer = b"".join(iter(lambda conn=conn: conn.recv(65536), b""))
        statuses.append(int(answer[9:12]) if answer.startswith(b"HTTP/1.") else 0)
    return statuses


def _client(job: tuple[int, list[bytes]]) -> list[int]:
    port, requests = job
    return post(port, requests)


_serial = iter(range(10**9))


def stripe_requests(n: int) -> list[bytes]:
    """n distinct events, signed just before the round (the signature's 300 s tolerance)."""
    out = []
    for _ in range(n):
        k = next(_serial)
        # Ids no payment of the apply benchmark has (its intents are pi_bench_<payment id>).
        intent = load(
            "payment_intent",
            id=f"pi_intake_{k}",
            amount=41650,
            amount_received=41650,
            currency="eur",
            metadata={"invoice_id": str(10**9 + k), "payment_id": str(10**9 + k)},
            status="succeeded",
            latest_charge=f"ch_intake_{k}",
        )
        body = json.dumps(event("payment_intent.succeeded", intent, event_id=f"evt_bench_{k}"))
        out.append((body, sign(body)))
    return [raw_request("/stripe/", body, {"Stripe-Signature": sig}) for body, sig in out]


def trivial_requests(n: int) -> list[bytes]:
    # Same body and headers as an event, so the only difference is what the view does.
    event_request = stripe_requests(1)[0]
    return [event_request.replace(b"POST /stripe/ ", b"POST /bench/trivial-post/ ", 1)] * n


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


def start_gunicorn(workers: int, **extra) -> tuple[subprocess.Popen, int]:
    gunicorn = Path(PY).with_name("gunicorn")
    port = free_port()
    proc = subprocess.Popen(
        [str(gunicorn), "config.wsgi", "-w", str(workers), "-b", f"127.0.0.1:{port}",
         "--log-level", "warning"],
        cwd=ROOT, env=environment(**extra), start_new_session=True,
    )  # fmt: skip
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def django_check(code: str) -> list[str]:
    return subprocess.run(
        [PY, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT, env=environment(), check=True, capture_output=True, text=True,
    ).stdout.split()  # fmt: skip


def bench_intake(args) -> None:
    arms = {
        "trivial POST": None,
        "stripe batched": start_gunicorn(args.workers),
        "stripe per-event": start_gunicorn(args.workers, STRIPE_WEBHOOK_APPLY_BATCH_SECONDS="0"),
    }
    trivial_port = arms["stripe batched"][1]
    for name, started in arms.items():
        if started:
            print(f"{name}: gunicorn pid {started[0].pid}, {args.workers} sync workers on "
                  f"127.0.0.1:{started[1]}", flush=True)  # fmt: skip
    rates: dict[str, list[float]] = {name: [] for name in arms}
    sent = 0
    try:
        for started in arms.values():
            if started:
                wait_ready(started[1], started[0])
        with multiprocessing.Pool(args.clients) as pool:
            # Warm-up: every worker has imported, connected and verified once.
            for started in arms.values():
                if started:
                    run_round(pool, started[1], trivial_requests(100), args.clients)
                    run_round(pool, started[1], stripe_requests(100), args.clients)
                    sent += 100
            for i in range(args.rounds):
                order = list(arms) if i % 2 == 0 else list(reversed(arms))
                for name in order:
                    if name == "trivial POST":
                        port, requests = trivial_port, trivial_requests(args.per_round)
                    else:
                        port, requests = arms[name][1], stripe_requests(args.per_round)
                        sent += len(requests)
                    rate = run_round(pool, port, requests, args.clients)
                    rates[name].append(rate)
                    print(f"round {i + 1} {name:16s} {rate:8,.0f} req/s", flush=True)
    finally:
        for started in arms.values():
            if started:
                stop(started[0])
    stored, redelivered, applied = (
        int(x)
        for x in django_check(
            "from billing.payments.models import WebhookEvent as W\n"
            "print(W.objects.count(), W.objects.filter(deliveries__gt=1).count(),"
            " W.objects.exclude(status='received').count())"
        )
    )
    print()
    print(
        f"{args.rounds} interleaved rounds of {args.per_round} requests per arm, "
        f"{args.clients} client processes, gunicorn {args.workers} sync workers; "
        f"load average {load_average()}"
    )
    print(f"{'':18s} {'req/s median (min-max)':>24s}")
    for name, values in rates.items():
        print(f"{name:18s} {spread(values):>24s}")
    for name in ("stripe batched", "stripe per-event"):
        pair = [t / s for t, s in zip(rates["trivial POST"], rates[name], strict=True)]
        ratio = statistics.median(rates["trivial POST"]) / statistics.median(rates[name])
        print(
            f"{name} vs trivial POST: {ratio:.2f}x (medians); per round {spread(pair, '{:.2f}')}x"
        )
    print(f"events sent {sent:,}, stored {stored:,}, redelivered {redelivered}, applied {applied}")
    if stored != sent or redelivered or applied:
        raise SystemExit("stored events do not match what was sent")


# --- apply: events applied by one and by two Celery workers -----------------------------

APPLY_SETUP = """
import datetime, json, sys
from decimal import Decimal
from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments.models import Payment, PaymentKind, WebhookEvent
from contracts.models import Customer
from core.money import to_minor_units
from tests.fixtures.stripe.helpers import event, load
tag, n, spread_over = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
customers = [Customer.objects.get_or_create(name=f"Bench apply {k}", defaults={
    "email": "apply@example.com", "country": "DE", "city": "Berlin",
    "stripe_customer_id": f"cus_bench_{k}"})[0] for k in range(spread_over)]
today = datetime.date.today()
invoices = Invoice.objects.bulk_create(Invoice(
    number=f"WH-{tag}-{i}", customer=customers[i % spread_over], status=InvoiceStatus.OPEN,
    currency="EUR",
    period_start=today, period_end=today, issue_date=today,
    due_date=today + datetime.timedelta(days=14), subtotal=Decimal("350.00"),
    tax=Decimal("66.50"), total=Decimal("416.50"), bill_to_name="Bench", bill_to_country="DE",
) for i in range(n))
payments = Payment.objects.bulk_create(Payment(
    invoice=inv, provider="stripe", kind=PaymentKind.CHECKOUT, amount=inv.total,
    currency="EUR", idempotency_key=f"bench-{inv.pk}", provider_checkout_id=f"cs_bench_{inv.pk}",
) for inv in invoices)
rows = []
for p in payments:
    intent = load("payment_intent", id=f"pi_bench_{p.pk}", amount=to_minor_units(p.amount),
        amount_received=to_minor_units(p.amount), currency="eur",
        customer=p.invoice.customer.stripe_customer_id,
        metadata={"invoice_id": str(p.invoice_id), "payment_id": str(p.pk)},
        status="succeeded", latest_charge=f"ch_bench_{p.pk}", last_payment_error=None,
        next_action=None)
    body = event("payment_intent.succeeded", intent, event_id=f"evt_apply_{p.pk}")
    rows.append(WebhookEvent(provider="stripe", event_id=body["id"], type=body["type"],
        object_id=intent["id"], status="received", body=json.dumps(body)))
WebhookEvent.objects.bulk_create(rows)
"""


def waiting_events() -> int:
    """Events not applied yet, over one kept connection (a new one per poll would cost the
    machine a backend process 50 times a second)."""
    import psycopg

    conn = _poller.get("conn")
    if conn is None:
        conn = _poller["conn"] = psycopg.connect(
            f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}", autocommit=True
        )
    return conn.execute(
        "SELECT count(*) FROM payments_webhookevent WHERE status = 'received'"
    ).fetchone()[0]


_poller: dict = {}


def start_worker(name: str, queues: str, tree: Path = ROOT) -> subprocess.Popen:
    # -c 1: a solo worker otherwise reports the CPU count as its concurrency and reserves
    # that many messages, so worker 1 could take both of a "2 workers" round's tasks.
    celery = Path(PY).with_name("celery")
    return subprocess.Popen(
        [str(celery), "-A", "config", "worker", "--pool", "solo", "-c", "1", "-Q", queues,
         "-n", f"{name}@bench", "--loglevel", "warning", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=tree, env=environment(DJANGO_SETTINGS_MODULE="config.settings.production"),
        start_new_session=True,
    )  # fmt: skip


def publish_apply(queue: str, copies: int) -> None:
    """Publish by task name from a plain Celery app: no Django start-up inside the timing."""
    from celery import Celery

    app = _publisher.get("app")
    if app is None:
        app = _publisher["app"] = Celery(broker=BROKER)
    for _ in range(copies):
        app.send_task("payments.apply_waiting_webhook_events", queue=queue)


_publisher: dict = {}


def bench_apply(args) -> None:
    # The intake's events name no payment: out of the way of the "waiting" count.
    django_check("from billing.payments.models import WebhookEvent as W\nW.objects.all().delete()")
    # Each code under test has two workers: worker 1 consumes <prefix>1 and <prefix>2,
    # worker 2 only <prefix>2; "1 worker" rounds publish one task to <prefix>1, "2 workers"
    # rounds one task per worker to <prefix>2.
    trees = {"": ROOT}
    if args.baseline:
        trees["baseline "] = Path(args.baseline).resolve()
    workers = []
    for label, tree in trees.items():
        prefix = "b" if label else ""
        workers += [
            start_worker(f"{prefix}a1", f"{prefix}apply1,{prefix}apply2", tree),
            start_worker(f"{prefix}a2", f"{prefix}apply2", tree),
        ]
    code = ", ".join(f"{label or 'this '}{tree}" for label, tree in trees.items())
    print(f"celery workers {[w.pid for w in workers]} (solo pool) on {BROKER}; code: {code}")
    arms = {
        f"{label}{n}": ("b" if label else "", n)
        for label in trees
        for n in ("1 worker", "2 workers")
    }
    rates: dict[str, list[float]] = {name: [] for name in arms}
    try:
        time.sleep(3)
        # Warm-up round (imports, connections) on every worker.
        for prefix in {p for p, _n in arms.values()}:
            subject_round("warm" + prefix, 100, f"{prefix}apply2", 2, args.apply_customers)
        for i in range(args.apply_rounds):
            order = list(arms) if i % 2 == 0 else list(reversed(arms))
            for name in order:
                prefix, n = arms[name]
                copies = 1 if n == "1 worker" else 2
                queue = f"{prefix}apply{copies}"
                tag = f"{i}{prefix}{copies}"
                rate = subject_round(tag, args.apply_events, queue, copies, args.apply_customers)
                rates[name].append(rate)
                print(f"round {i + 1} {name:19s} {rate:8,.0f} events/s applied", flush=True)
    finally:
        for w in workers:
            stop(w)
        if "conn" in _poller:
            _poller.pop("conn").close()
    not_once = django_check(
        "from billing.payments.models import Payment, WebhookEvent as W\n"
        "from billing.invoices.models import Invoice\n"
        "from core.models import AuditEntry\n"
        "bench = Invoice.objects.filter(number__startswith='WH-')\n"
        "print(W.objects.exclude(status='processed').count(),"
        " bench.exclude(status='paid').count(),"
        " bench.exclude(amount_paid=416.50).count(),"
        " Payment.objects.filter(invoice__in=bench).exclude(status='succeeded').count(),"
        " AuditEntry.objects.filter(action='invoice.paid').count() - bench.count())"
    )
    print()
    print(
        f"{args.apply_rounds} interleaved rounds of {args.apply_events} events "
        f"(invoices of {args.apply_customers} customers); load average {load_average()}"
    )
    for name, values in rates.items():
        print(f"{name:19s} {spread(values):>24s} events/s applied")
    for label in trees:
        one, two = rates[f"{label}1 worker"], rates[f"{label}2 workers"]
        pair = [b / a for a, b in zip(one, two, strict=True)]
        ratio = statistics.median(two) / statistics.median(one)
        per_round = spread(pair, "{:.2f}")
        print(f"{label}two workers / one: {ratio:.2f}x (medians); per round {per_round}x")
    if args.baseline:
        for n in ("1 worker", "2 workers"):
            pair = [a / b for a, b in zip(rates[n], rates[f"baseline {n}"], strict=True)]
            ratio = statistics.median(rates[n]) / statistics.median(rates[f"baseline {n}"])
            per_round = spread(pair, "{:.2f}")
            print(f"{n} this / baseline: {ratio:.2f}x (medians); per round {per_round}x")
    print(
        f"events not processed: {not_once[0]}, bench invoices not paid: {not_once[1]}, "
        f"paid another amount: {not_once[2]}, payments not succeeded: {not_once[3]}, "
        f"invoice.paid entries beyond one per invoice: {not_once[4]}"
    )
    if any(x != "0" for x in not_once):
        raise SystemExit("not every event was applied exactly once")


def subject_round(tag: str, n: int, queue: str, copies: int, customers: int) -> float:
    subprocess.run(
        [PY, "-c", "import django; django.setup()\n" + APPLY_SETUP, tag, str(n), str(customers)],
        cwd=ROOT, env=environment(), check=True,
    )  # fmt: skip
    assert waiting_events() == n
    started = time.perf_counter()
    publish_apply(queue, copies)
    deadline = started + 600
    while waiting_events():
        if time.perf_counter() > deadline:
            raise SystemExit("events not applied within 600 s")
        time.sleep(0.02)
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="intake,apply", help="intake, apply or both")
    parser.add_argument("--rounds", type=int, default=6, help="intake rounds (A/B/C each)")
    parser.add_argument("--per-round", type=int, default=1200, help="requests per arm and round")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client processes")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers")
    parser.add_argument("--apply-rounds", type=int, default=4)
    parser.add_argument("--apply-events", type=int, default=600, help="events per apply round")
    parser.add_argument(
        "--apply-customers", type=int, default=50, help="customers the apply invoices belong to"
    )
    parser.add_argument(
        "--baseline",
        default="",
        help="a checkout of the code to compare the apply against (e.g. git worktree of main)",
    )
    args = parser.parse_args()
    chosen = set(args.only.split(","))

    recreate_database()
    flush_broker()
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT,
                   env=environment(), check=True)  # fmt: skip
    try:
        if "intake" in chosen:
            bench_intake(args)
        if "apply" in chosen:
            if "intake" in chosen:
                print()
            bench_apply(args)
    finally:
        flush_broker()


if __name__ == "__main__":
    main()
