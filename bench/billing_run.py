"""Benchmark: the billing run, in-process and on one and two real Celery workers, A/B
against the bulk-insert floor, interleaved in one run.

    .venv/bin/python bench/billing_run.py [--contracts 2000] [--rounds 5] [--chunk 100]
        [--only floor,inprocess,worker1,worker2]

Recreates the scratch database `portal_bench_billing` (BENCH_DATABASE_URL overrides it; the
name must start with `portal_bench`), loads --contracts customers/blocks/contracts with SQL,
and starts two Celery worker processes (`--pool solo`, one process each, production
settings, broker on Redis database 7, BENCH_BROKER_URL overrides it). Worker 1 consumes the
queues `bench1` and `bench2`, worker 2 only `bench2`: a round "worker1" publishes its chunks
to `bench1` (one worker bills them), "worker2" to `bench2` (both do). Each round bills every
contract's next month, so each subject bills the same N contracts, due that day.

Figures per round, in an order that alternates (forward, then backward) so drift on this
shared machine hits every figure alike:
- floor: the same number of invoices (complete, numbered) and lines inserted with two
  bulk INSERTs in one transaction: what issuing them costs at the least.
- inprocess: services.billing_run() in one process; every query counted (execute wrapper)
  and the invoice-number counter's lock hold measured (from its statement to the commit).
Floor and in-process run in a child process started like the workers (a session of its
own: Linux autogroups share the CPU between sessions, so on a busy machine a process in
the script's own session got half a worker's share; see bench/scratch.own_session).
- worker1 / worker2: the chunks published (bill_contract_chunk, one message per chunk),
  timed from the first publish until every contract's invoice is committed (polled).
Tasks the chunks queue after commit (invoices.invoices_issued) go to the default queue,
which no worker here consumes: they are published, not run (PDFs and charges are other
benchmarks' business). Prints every round, then median, min and max per figure, and the
ratios (subject time per invoice / floor time per invoice) per round and of the medians.
"""

import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.scratch import load_average, own_session, use_scratch  # noqa: E402

own_session()
BROKER = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")
os.environ["BENCH_BROKER_URL"] = BROKER
DB_NAME = use_scratch("portal_bench_billing")
ENV = {
    "DJANGO_SETTINGS_MODULE": "config.settings.production",
    "DJANGO_SECRET_KEY": "bench-only-" + "x" * 50,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
    "REDIS_URL": BROKER,
    "CELERY_BROKER_URL": BROKER,
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "LOG_LEVEL": "WARNING",
    "VIES_ENABLED": "false",
}
os.environ.update(ENV)

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from bench.data import load_contracts, recreate_database, sql  # noqa: E402
from billing.invoices import services  # noqa: E402
from billing.invoices.models import Invoice, InvoiceLine, InvoiceStatus  # noqa: E402
from billing.invoices.tasks import bill_contract_chunk  # noqa: E402
from contracts.models import LeaseContract  # noqa: E402

FIRST_DAY = datetime.date.today().replace(day=1)
FIGURES = ("floor", "inprocess", "worker1", "worker2")


def say(text: str = "") -> None:
    print(text, flush=True)


def flush_broker() -> None:
    import redis

    redis.Redis.from_url(BROKER).flushdb()


class Counter:
    """Counts queries; times the number counter's lock (its statement until the commit)."""

    def __init__(self) -> None:
        self.count = 0
        self.holds: list[float] = []
        self.statements: list[float] = []  # the part of the hold that is the statement

    def __call__(self, execute, statement, params, many, context):
        self.count += 1
        # The statement that takes the counter's row (alone, or inside the chunk's last
        # statement, which numbers and writes the invoices).
        if "INSERT INTO invoices_invoicenumbercounter" in statement:
            started = time.perf_counter()
            transaction.on_commit(lambda: self.holds.append(time.perf_counter() - started))
            result = execute(statement, params, many, context)
            self.statements.append(time.perf_counter() - started)
            return result
        return execute(statement, params, many, context)


class Months:
    """Each billing subject bills the next month of every contract."""

    def __init__(self) -> None:
        self.index = 0

    def next(self) -> datetime.date:
        self.index += 1
        month = FIRST_DAY.month - 1 + self.index
        return FIRST_DAY.replace(year=FIRST_DAY.year + month // 12, month=month % 12 + 1)


def billed_through(day: datetime.date) -> int:
    return LeaseContract.objects.filter(next_billing_date__gt=day).count()


def run_floor(n: int, round_no: int) -> dict:
    """N invoices shaped as the run issues them (complete, numbered) and one line each."""
    sample = Invoice.objects.filter(status=InvoiceStatus.OPEN).order_by("-pk").first()
    contracts = list(LeaseContract.objects.order_by("pk").values_list("pk", "customer_id")[:n])
    period = datetime.date(1990, 1, 1) + datetime.timedelta(days=round_no)
    fields = {
        f.attname: getattr(sample, f.attname)
        for f in Invoice._meta.concrete_fields
        if f.attname not in ("id", "number", "customer_id", "contract_id", "created_at",
                             "updated_at", "period_start", "period_end")
    }  # fmt: skip
    started = time.perf_counter()
    with transaction.atomic():
        invoices = Invoice.objects.bulk_create(
            Invoice(
                **fields,
                number=f"FLOOR-{round_no}-{i}",
                customer_id=customer_id,
                contract_id=None,
                period_start=period,
                period_end=period,
            )
            for i, (_, customer_id) in enumerate(contracts)
        )
        InvoiceLine.objects.bulk_create(
            InvoiceLine(
                invoice=inv,
                position=0,
                description="IPv4 lease 10.0.0.0/24 (256 addresses), floor",
                unit_price=Decimal("350.00"),
                amount=Decimal("350.00"),
                tax_rate=Decimal("19.00"),
            )
            for inv in invoices
        )
    return {"seconds": time.perf_counter() - started, "invoices": len(invoices)}


def run_inprocess(n: int, day: datetime.date, chunk: int) -> dict:
    counter = Counter()
    profile = None
    if os.environ.get("BENCH_PROFILE"):  # a cProfile dump of this figure, to look inside
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    with connection.execute_wrapper(counter):
        started = time.perf_counter()
        result = services.billing_run(today=day, chunk_size=chunk)
        seconds = time.perf_counter() - started
    if profile is not None:
        profile.disable()
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    assert len(result.invoice_ids) == n and not result.errors, (len(result.invoice_ids), result)
    return {
        "seconds": seconds,
        "invoices": n,
        "queries": counter.count,
        "lock_ms": statistics.median(counter.holds) * 1000,
        "statement_ms": statistics.median(counter.statements) * 1000,
    }


def run_workers(n: int, day: datetime.date, chunk: int, queue: str) -> dict:
    due = services.due_contract_ids(day)
    assert len(due) == n, (len(due), n)
    started = time.perf_counter()
    for ids in services.chunked(due, chunk):
        bill_contract_chunk.apply_async((ids, day.isoformat()), queue=queue)
    deadline = started + 600
    while billed_through(day) < n:
        if time.perf_counter() > deadline:
            raise SystemExit(f"workers did not bill {n} contracts within 600 s")
        time.sleep(0.02)
    return {"seconds": time.perf_counter() - started, "invoices": n}


def run_child(figure: str, n: int, round_no: int, day: datetime.date | None, chunk: int) -> dict:
    """Run the floor or the in-process figure in a process started like a worker (a session
    of its own, so the scheduler gives it a worker's share of the CPU), and read its row."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", figure, str(n), str(round_no),
         day.isoformat() if day else "", str(chunk)],
        cwd=ROOT, env={**os.environ, "BENCH_OWN_SESSION": "1"}, start_new_session=True,
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def child(figure: str, n: int, round_no: int, day: str, chunk: int) -> None:
    if figure == "floor":
        run_floor(n, 1000 + round_no)  # warm: the same statements once, not timed
        row = run_floor(n, round_no)
    else:
        row = run_inprocess(n, datetime.date.fromisoformat(day), chunk)
    print(json.dumps(row))


def start_worker(name: str, queues: str) -> subprocess.Popen:
    env = {**os.environ, **ENV, "DATABASE_URL": os.environ["DATABASE_URL"]}
    celery = Path(sys.executable).with_name("celery")
    return subprocess.Popen(
        [str(celery), "-A", "config", "worker", "--pool", "solo", "-Q", queues,
         "-n", f"{name}@bench", "--loglevel", "warning", "--without-heartbeat",
         "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip


def stop(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def spread(values: list[float], fmt: str = "{:,.0f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contracts", type=int, default=2000, help="due in each round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=settings.BILLING_CHUNK_SIZE)
    parser.add_argument("--only", default=",".join(FIGURES), help="comma-separated figures")
    args = parser.parse_args()
    chosen = [f for f in FIGURES if f in args.only.split(",")]
    n = args.contracts

    recreate_database()
    flush_broker()
    call_command("migrate", verbosity=0)
    load_contracts(first=1, count=n, customers=max(1, n // 5), next_billing=FIRST_DAY)
    sql("ANALYZE")
    months = Months()
    # Warm-up (imports, the content type cache, a first number counter row): month 1.
    warm = services.billing_run(today=FIRST_DAY)
    assert len(warm.invoice_ids) == n, len(warm.invoice_ids)
    workers = []
    if "worker1" in chosen or "worker2" in chosen:
        workers = [start_worker("w1", "bench1,bench2"), start_worker("w2", "bench2")]
        say(f"celery workers {[w.pid for w in workers]} (solo pool) on {BROKER}")
        time.sleep(3)
    rows: dict[str, list[dict]] = {f: [] for f in chosen}
    try:
        if workers:  # their imports and connections, outside the figures
            run_workers(n, months.next(), args.chunk, "bench2")
        for r in range(args.rounds):
            order = chosen if r % 2 == 0 else list(reversed(chosen))
            for figure in order:
                if figure == "floor":
                    row = run_child("floor", n, r, None, args.chunk)
                elif figure == "inprocess":
                    row = run_child("inprocess", n, r, months.next(), args.chunk)
                else:
                    queue = "bench1" if figure == "worker1" else "bench2"
                    row = run_workers(n, months.next(), args.chunk, queue)
                rows[figure].append(row)
                extra = ""
                if "queries" in row:
                    extra = (
                        f", {row['queries'] / row['invoices']:.2f} q/inv, "
                        f"counter lock {row['lock_ms']:.1f} ms/chunk "
                        f"(its statement {row['statement_ms']:.1f} ms)"
                    )
                say(
                    f"round {r + 1} {figure:10s} {row['invoices']:,} invoices in "
                    f"{row['seconds']:.2f} s = {row['invoices'] / row['seconds']:,.0f} inv/s"
                    + extra
                )
    finally:
        for w in workers:
            stop(w)
        flush_broker()
    say()
    say(
        f"{args.rounds} interleaved rounds, {n:,} contracts due per round, chunks of "
        f"{args.chunk}; load average {load_average()}"
    )
    rates = {f: [row["invoices"] / row["seconds"] for row in rows[f]] for f in chosen}
    say(f"{'figure':10s} {'inv/s median (min-max)':>26s}")
    for figure in chosen:
        say(f"{figure:10s} {spread(rates[figure]):>26s}")
    if "inprocess" in chosen:
        q = [row["queries"] / row["invoices"] for row in rows["inprocess"]]
        locks = [row["lock_ms"] for row in rows["inprocess"]]
        say(f"queries per invoice (in-process): {spread(q, '{:.2f}')}")
        statements = [row["statement_ms"] for row in rows["inprocess"]]
        say(
            f"counter lock held per chunk: {spread(locks, '{:.1f}')} ms, of which the "
            f"statement that takes it {spread(statements, '{:.1f}')} ms (the rest: commit)"
        )
    if "floor" in chosen:
        for figure in chosen:
            if figure == "floor":
                continue
            per_round = [f / s for f, s in zip(rates["floor"], rates[figure], strict=True)]
            say(
                f"{figure} / floor (time per invoice): "
                f"{statistics.median(rates['floor']) / statistics.median(rates[figure]):.2f}x "
                f"of medians; per round {spread(per_round, '{:.2f}')}x"
            )
    if "worker1" in chosen and "worker2" in chosen:
        per_round = [b / a for a, b in zip(rates["worker1"], rates["worker2"], strict=True)]
        say(
            f"two workers / one: "
            f"{statistics.median(rates['worker2']) / statistics.median(rates['worker1']):.2f}x "
            f"of medians; per round {spread(per_round, '{:.2f}')}x"
        )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        figure, n, round_no, day, chunk = sys.argv[2:7]
        child(figure, int(n), int(round_no), day, int(chunk))
    else:
        main()
