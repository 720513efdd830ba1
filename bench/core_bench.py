"""Benchmark: grace enforcement at 1,000,000 invoices, A/B against a SELECT 1 round trip.

    .venv/bin/python bench/core_bench.py [--big-contracts 100000]
        [--invoices-per-contract 10] [--rounds 4] [--overdue 100,1000]

Drops and recreates the scratch database `portal_bench_core` (BENCH_DATABASE_URL overrides
it; the name must start with `portal_bench`), loads --big-contracts contracts with
--invoices-per-contract paid invoices each (bulk SQL), then runs rounds. Each round, in an
order that alternates (forward, then backward), enforces grace on a fresh batch of each
size in --overdue (that many contracts get an overdue Open invoice) and times a batch of
2,000 `SELECT 1` round trips, the baseline, in between. Per figure: ms per cancelled
contract, queries per contract, the candidate query, median and min-max over the rounds,
and the ratio to SELECT 1 per round. The flatness claim (cost follows the overdue
contracts, not the table) is the ratio of the per-contract times of the two sizes, per
round. Tasks the services queue are published to Redis database 7, not run.

The billing run has its own benchmark (bench/billing_run.py), and so has the webhook
intake (bench/webhook_intake.py): the endpoint no longer applies events, so the in-process
ingestion figure this script used to print measured something that no longer exists.
"""

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("BENCH_BROKER_URL", "redis://127.0.0.1:6379/7")
from bench.scratch import load_average, use_scratch  # noqa: E402

use_scratch("portal_bench_core")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from bench.data import load_contracts, recreate_database, sql  # noqa: E402
from billing.collections.selectors import grace_candidates, overdue_contract_ids  # noqa: E402
from billing.collections.services import grace_enforce  # noqa: E402
from billing.invoices.models import Invoice  # noqa: E402
from config.celery import app as celery_app  # noqa: E402
from contracts.models import LeaseContract  # noqa: E402

# Queue, don't run: in production the workers send the e-mails.
settings.CELERY_TASK_ALWAYS_EAGER = False
celery_app.conf.update(task_always_eager=False)

TODAY = datetime.date.today().replace(day=1)


def say(text: str = "") -> None:
    print(text, flush=True)


def flush_queue() -> None:
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()


class CountQueries:
    """Counts every query (CaptureQueriesContext keeps only the last 9,000)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)

    def __len__(self) -> int:
        return self.count

    def __enter__(self):
        self._cm = connection.execute_wrapper(self)
        self._cm.__enter__()
        return self

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def select1_ms(rounds: int = 2000) -> float:
    times = []
    with connection.cursor() as cur:
        for _ in range(rounds):
            t = time.perf_counter()
            cur.execute("SELECT 1")
            cur.fetchone()
            times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def explain_candidates() -> str:
    # The index step; the second step reads the resulting contracts by primary key.
    return overdue_contract_ids(today=TODAY).explain(analyze=True)


def make_overdue(count: int, after_id: int) -> tuple[int, int]:
    """Open the newest invoice of the next `count` contracts after `after_id`, due long enough
    ago to cancel; returns (how many, the last contract id used)."""
    due = TODAY - datetime.timedelta(days=settings.GRACE_PERIOD_DAYS + 3)
    ids = list(
        LeaseContract.objects.filter(pk__gt=after_id)
        .order_by("pk")
        .values_list("pk", flat=True)[:count]
    )
    with connection.cursor() as cur:
        cur.execute(
            """
            UPDATE invoices_invoice i SET status = 'open', amount_paid = 0, paid_at = NULL,
                due_date = %(due)s
            WHERE i.contract_id = ANY(%(ids)s)
              AND i.period_start = (SELECT max(period_start) FROM invoices_invoice
                                    WHERE contract_id = i.contract_id)
            """,
            {"ids": ids, "due": due},
        )
        return cur.rowcount, ids[-1]


def timed_grace(expected: int) -> dict:
    t = time.perf_counter()
    candidates = len(list(grace_candidates(today=TODAY)))
    query_ms = (time.perf_counter() - t) * 1000
    with CountQueries() as queries:
        t = time.perf_counter()
        result = grace_enforce(today=TODAY)
        elapsed = time.perf_counter() - t
    cancelled = len(result.cancelled)
    assert candidates == expected == cancelled, (candidates, expected, cancelled)
    return {
        "ms_per_contract": elapsed * 1000 / cancelled,
        "queries": len(queries) / cancelled,
        "candidates_ms": query_ms,
    }


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return (
        f"{fmt.format(statistics.median(values))} "
        f"({fmt.format(min(values))}-{fmt.format(max(values))})"
    )


def load_big(args) -> None:
    per_contract = args.invoices_per_contract
    say(
        f"loading {args.big_contracts:,} contracts with {per_contract} paid invoices each "
        "(bulk SQL) ..."
    )
    t = time.perf_counter()
    load_contracts(
        first=1, count=args.big_contracts, customers=max(1, args.big_contracts // 10),
        next_billing=TODAY + datetime.timedelta(days=40),
    )  # fmt: skip
    sql(
        """
        INSERT INTO invoices_invoice (number, customer_id, contract_id, status, billing_reason,
            currency, period_start, period_end, issue_date, due_date, subtotal, tax, total,
            amount_paid, amount_refunded, pre_payment_credit_notes_amount,
            post_payment_credit_notes_amount, applied_balance, bill_to_name, bill_to_address,
            bill_to_country, bill_to_tax_id, bill_to_email, bill_to_line1, bill_to_line2,
            bill_to_postal_code, bill_to_city, bill_to_state, buyer_reference,
            purchase_order_reference, document_language, tax_note, paid_at, paid_out_of_band,
            state_version, created_at, updated_at)
        SELECT 'HIST-' || c.id || '-' || k, c.customer_id, c.id, 'paid', 'subscription_cycle',
            'EUR', p.start, (p.start + interval '1 month' - interval '1 day')::date, p.start,
            p.start + 14, 350.00, 66.50, 416.50, 416.50, 0, 0, 0, 0, 'Bench', '', 'DE', '',
            'b@example.com', '', '', '', '', '', '', '', '', '', p.start + 3, false, 1,
            now(), now()
        FROM contracts_leasecontract c
        CROSS JOIN generate_series(1, %(k)s) AS k,
        LATERAL (SELECT (%(today)s::date - make_interval(months => k))::date AS start) AS p
        """,
        {"k": per_contract, "today": TODAY},
    )
    sql("ANALYZE")
    say(
        f"loaded in {time.perf_counter() - t:.0f} s: {LeaseContract.objects.count():,} "
        f"contracts, {Invoice.objects.count():,} invoices"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-contracts", type=int, default=100_000)
    parser.add_argument("--invoices-per-contract", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--overdue", type=lambda v: [int(x) for x in v.split(",")], default=[100, 1_000]
    )
    args = parser.parse_args()
    needed = args.rounds * sum(args.overdue)
    if needed > args.big_contracts:
        parser.error(f"{args.rounds} rounds of {args.overdue} need {needed:,} contracts")

    started = time.perf_counter()
    recreate_database()
    flush_queue()
    call_command("migrate", verbosity=0)
    try:
        load_big(args)
        t = time.perf_counter()
        none = len(list(grace_candidates(today=TODAY)))
        say(f"candidate query with {none} overdue: {(time.perf_counter() - t) * 1000:.1f} ms")
        figures = {f"{n:,} overdue": n for n in args.overdue}
        rows: dict[str, list[dict]] = {name: [] for name in figures}
        base: list[float] = []
        last_id = 0
        for r in range(args.rounds):
            order = list(figures) if r % 2 == 0 else list(reversed(figures))
            base.append(select1_ms())
            for name in order:
                n, last_id = make_overdue(figures[name], last_id)
                sql("ANALYZE invoices_invoice")
                row = timed_grace(n)
                row["select1_ms"] = select1_ms()
                rows[name].append(row)
                say(
                    f"round {r + 1} {name:14s} {row['ms_per_contract']:.2f} ms/contract, "
                    f"{row['queries']:.0f} queries/contract, candidates "
                    f"{row['candidates_ms']:.1f} ms; SELECT 1 {row['select1_ms']:.3f} ms"
                )
        say("EXPLAIN ANALYZE of the candidate query (nothing overdue now):")
        for line in explain_candidates().splitlines():
            say("    " + line)
    finally:
        flush_queue()
    say()
    say(
        f"{args.rounds} interleaved rounds, {LeaseContract.objects.count():,} contracts, "
        f"{Invoice.objects.count():,} invoices; load average {load_average()}"
    )
    for name, values in rows.items():
        per = [v["ms_per_contract"] for v in values]
        ratio = [v["ms_per_contract"] / v["select1_ms"] for v in values]
        say(
            f"{name:14s} {spread(per)} ms/contract, {spread(ratio, '{:.0f}')}x SELECT 1 "
            f"(per round), {spread([v['queries'] for v in values], '{:.0f}')} queries/contract"
        )
    small, big = (rows[f"{n:,} overdue"] for n in args.overdue[:1] + args.overdue[-1:])
    flat = [b["ms_per_contract"] / a["ms_per_contract"] for a, b in zip(small, big, strict=True)]
    say(
        f"per-contract time {args.overdue[-1]:,} vs {args.overdue[0]:,} overdue, per round: "
        f"{spread(flat)}x (flat: the cost follows the overdue contracts, not the table)"
    )
    say(f"SELECT 1 baseline between rounds: {spread(base, '{:.3f}')} ms")
    say(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
