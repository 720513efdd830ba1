"""Benchmark: billing run, grace enforcement and webhook ingestion on PostgreSQL.

    .venv/bin/python bench/core_bench.py [--contracts 5000] [--big-contracts 100000]
        [--invoices-per-contract 10] [--events 10000] [--duplicates 1000]

Drops and recreates the scratch database `portal_bench_core` (BENCH_DATABASE_URL overrides
it) on every run, bulk-loads it, and prints each figure next to a trivial `SELECT 1`
round trip measured in the same run. Tasks the services queue (PDF rendering,
charges, e-mails) are published to Redis database 9, not run: this measures the
services and the webhook endpoint, not the workers. Not part of the test suite.
"""

import argparse
import datetime
import json
import os
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.scratch import use_scratch  # noqa: E402

use_scratch("portal_bench_core")
os.environ.setdefault("LOG_LEVEL", "WARNING")
os.environ["DJANGO_ALLOWED_HOSTS"] = "testserver"
# The webhook endpoint verifies with the secret the Stripe test helpers sign with.
os.environ["PAYMENT_PROVIDER"] = "stripe"
os.environ["STRIPE_SECRET_KEY"] = "sk_test_" + "b" * 24
os.environ["STRIPE_API_BASE"] = "https://api.stripe.invalid"
os.environ["STRIPE_MAX_NETWORK_RETRIES"] = "0"

from tests.fixtures.stripe.helpers import WEBHOOK_SECRET, event, load, sign  # noqa: E402

os.environ["STRIPE_WEBHOOK_SECRET"] = WEBHOOK_SECRET

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.db.models import Sum  # noqa: E402
from django.test import Client  # noqa: E402

from billing.collections.selectors import grace_candidates, overdue_contract_ids  # noqa: E402
from billing.collections.services import grace_enforce  # noqa: E402
from billing.invoices.models import Invoice, InvoiceStatus  # noqa: E402
from billing.invoices.services import billing_run  # noqa: E402
from billing.payments.models import (  # noqa: E402
    Payment,
    PaymentKind,
    PaymentStatus,
    WebhookEvent,
)
from config.celery import app as celery_app  # noqa: E402
from contracts.models import ContractStatus, LeaseContract  # noqa: E402
from core.money import to_minor_units  # noqa: E402

# Queue, don't run: in production the workers render PDFs and charge cards.
settings.CELERY_TASK_ALWAYS_EAGER = False
celery_app.conf.update(task_always_eager=False)

TODAY = datetime.date.today().replace(day=1)


def say(text: str = "") -> None:
    print(text, flush=True)


def recreate_database() -> None:
    import psycopg

    db = settings.DATABASES["default"]
    admin = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


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


def sql(statement: str, params=None) -> None:
    with connection.cursor() as cur:
        cur.execute(statement, params)


def load_contracts(*, first: int, count: int, customers: int, next_billing: datetime.date) -> None:
    """`count` customers/blocks/contracts numbered from `first`, one /24 block each, via SQL."""
    last = first + count - 1
    sql(
        """
        INSERT INTO contracts_customer (name, email, phone, address_line1, address_line2,
            postal_code, city, state, country, is_business, tax_id, default_currency,
            stripe_customer_id, created_at)
        SELECT 'Bench Customer ' || g, 'c' || g || '@example.com', '', 'Street ' || g, '',
            '10115', 'Berlin', '', 'DE', true, 'DE' || lpad(g::text, 9, '0'), 'EUR',
            'cus_bench' || g, now()
        FROM generate_series(%(first)s, %(first)s + %(customers)s - 1) AS g
        """,
        {"first": first, "customers": customers},
    )
    sql(
        """
        INSERT INTO contracts_ipblock (prefix, first_address, last_address, registry, status,
            created_at)
        SELECT (a >> 24) || '.' || (a >> 16 & 255) || '.' || (a >> 8 & 255) || '.0/24',
            a, a + 255, 'ripe', 'leased', now()
        FROM generate_series(%(first)s, %(last)s) AS g,
             LATERAL (SELECT (167772160 + g::bigint * 256) AS a) AS addr
        """,
        {"first": first, "last": last},
    )
    sql(
        """
        INSERT INTO contracts_leasecontract (customer_id, price_per_block, currency,
            billing_anchor_day, status, started_on, next_billing_date, grace_extended_until,
            cancelled_at, cancellation_reason, created_at, updated_at)
        SELECT c.id, 350.00, 'EUR', %(anchor)s, 'active', %(started)s, %(next)s, NULL, NULL,
            '', now(), now()
        FROM generate_series(%(first)s, %(last)s) AS g,
             LATERAL (SELECT max(id) - %(customers)s + 1 AS base FROM contracts_customer) AS m,
             LATERAL (SELECT m.base + (g - %(first)s) %% %(customers)s AS id) AS c
        ORDER BY g
        """,
        {
            "first": first,
            "last": last,
            "customers": customers,
            "anchor": next_billing.day,
            "started": datetime.date(2020, 1, next_billing.day),
            "next": next_billing,
        },
    )
    # The n-th contract created in this batch leases the n-th block created in it.
    sql(
        """
        INSERT INTO contracts_leasecontract_blocks (leasecontract_id, ipblock_id)
        SELECT c.id, b.id
        FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM contracts_leasecontract
              ORDER BY id DESC LIMIT %(count)s) AS c
        JOIN (SELECT id, row_number() OVER (ORDER BY id) AS n FROM contracts_ipblock
              ORDER BY id DESC LIMIT %(count)s) AS b USING (n)
        """,
        {"count": count},
    )


def bench_billing(args, base_ms: float) -> None:
    say(f"== billing run: {args.contracts:,} contracts due {TODAY} ==")
    load_contracts(
        first=1, count=args.contracts, customers=max(1, args.contracts // 5), next_billing=TODAY
    )
    sql("ANALYZE")
    with CountQueries() as queries:
        t = time.perf_counter()
        result = billing_run(today=TODAY)
        elapsed = time.perf_counter() - t
    issued = len(result.invoice_ids)
    assert issued == args.contracts and not result.errors, (issued, result.errors)
    per_invoice_ms = elapsed * 1000 / issued
    say(f"invoices issued      {issued:,} in {elapsed:.1f} s  ({issued / elapsed:,.0f} invoices/s)")
    say(f"queries per invoice  {len(queries) / issued:.1f}")
    say(
        f"per invoice          {per_invoice_ms:.2f} ms  "
        f"ratio to SELECT 1: {per_invoice_ms / base_ms:.0f}x"
    )
    again = billing_run(today=TODAY)
    say(f"second run same day  {len(again.invoice_ids)} invoices (idempotent)")
    say()


def explain_candidates() -> str:
    # The index step; the second step reads the resulting contracts by primary key.
    return overdue_contract_ids(today=TODAY).explain(analyze=True)


def make_overdue(contract_ids_sql: str, params: dict) -> int:
    """Open the newest invoice of each chosen contract, due long enough ago to cancel."""
    due = TODAY - datetime.timedelta(days=settings.GRACE_PERIOD_DAYS + 3)
    with connection.cursor() as cur:
        cur.execute(
            f"""
            UPDATE invoices_invoice i SET status = 'open', amount_paid = 0, paid_at = NULL,
                due_date = %(due)s
            FROM ({contract_ids_sql}) AS pick
            WHERE i.contract_id = pick.id
              AND i.period_start = (SELECT max(period_start) FROM invoices_invoice
                                    WHERE contract_id = pick.id)
            """,
            {**params, "due": due},
        )
        return cur.rowcount


def timed_grace(label: str, expected: int, base_ms: float, show_plan: bool) -> float:
    sql("ANALYZE invoices_invoice")
    t = time.perf_counter()
    candidates = len(list(grace_candidates(today=TODAY)))
    query_ms = (time.perf_counter() - t) * 1000
    if show_plan:
        say("EXPLAIN ANALYZE of the candidate query:")
        for line in explain_candidates().splitlines():
            say("    " + line)
    with CountQueries() as queries:
        t = time.perf_counter()
        result = grace_enforce(today=TODAY)
        elapsed = time.perf_counter() - t
    cancelled = len(result.cancelled)
    assert candidates == expected == cancelled, (candidates, expected, cancelled)
    per_ms = elapsed * 1000 / max(cancelled, 1)
    say(
        f"{label:34s} candidates query {query_ms:7.1f} ms | run {elapsed:6.1f} s, "
        f"{cancelled:,} cancelled, {per_ms:.2f} ms/contract "
        f"({per_ms / base_ms:.0f}x SELECT 1), "
        f"{len(queries) / max(cancelled, 1):.0f} queries/contract"
    )
    return per_ms


def bench_grace(args, base_ms: float) -> None:
    say("== grace enforcement ==")
    small_total = LeaseContract.objects.count()
    small_invoices = Invoice.objects.count()
    n = make_overdue(
        "SELECT id FROM contracts_leasecontract ORDER BY id LIMIT %(n)s", {"n": args.small_overdue}
    )
    timed_grace(
        f"{n:,} overdue / {small_total:,} contracts, {small_invoices:,} invoices",
        n,
        base_ms,
        show_plan=False,
    )

    per_contract = args.invoices_per_contract
    say(
        f"loading {args.big_contracts:,} contracts with {per_contract} paid invoices each "
        "(bulk SQL) ...",
    )
    t = time.perf_counter()
    first = small_total + 1
    load_contracts(
        first=first,
        count=args.big_contracts,
        customers=args.big_contracts // 10,
        next_billing=TODAY,
    )
    sql(
        """
        INSERT INTO invoices_invoice (number, customer_id, contract_id, status, billing_reason,
            currency, period_start, period_end, issue_date, due_date, subtotal, tax, total,
            amount_paid, amount_refunded, bill_to_name, bill_to_address, bill_to_country,
            bill_to_tax_id, bill_to_email, tax_note, paid_at, paid_out_of_band, state_version,
            created_at, updated_at)
        SELECT 'HIST-' || c.id || '-' || k, c.customer_id, c.id, 'paid', 'subscription_cycle',
            'EUR', p.start, (p.start + interval '1 month' - interval '1 day')::date, p.start,
            p.start + 14, 350.00, 66.50, 416.50, 416.50, 0, 'Bench', '', 'DE', '',
            'b@example.com', '', p.start + 3, false, 1, now(), now()
        FROM contracts_leasecontract c
        CROSS JOIN generate_series(1, %(k)s) AS k,
        LATERAL (SELECT (%(today)s::date - make_interval(months => k))::date AS start) AS p
        WHERE c.id > %(small)s
        """,
        {"k": per_contract, "today": TODAY, "small": small_total},
    )
    sql("ANALYZE")
    total_contracts = LeaseContract.objects.count()
    total_invoices = Invoice.objects.count()
    say(
        f"loaded in {time.perf_counter() - t:.0f} s: {total_contracts:,} contracts, "
        f"{total_invoices:,} invoices"
    )
    t = time.perf_counter()
    none = len(list(grace_candidates(today=TODAY)))
    say(f"candidate query with {none} overdue: {(time.perf_counter() - t) * 1000:.1f} ms")
    big_label = f"{total_contracts:,} contracts, {total_invoices:,} invoices"
    rows = []
    offset = small_total
    for size in args.overdue:
        n = make_overdue(
            "SELECT id FROM contracts_leasecontract WHERE id > %(off)s ORDER BY id LIMIT %(n)s",
            {"off": offset, "n": size},
        )
        offset += size
        rows.append(
            timed_grace(
                f"{n:,} overdue / {big_label}", n, base_ms, show_plan=size == args.overdue[-1]
            )
        )
    say(
        f"per-contract time {args.overdue[-1]:,} vs {args.overdue[0]:,} overdue: "
        f"{rows[-1] / rows[0]:.2f}x "
        "(flat: the cost follows the overdue contracts, not the table)"
    )
    say()


def state_snapshot() -> dict:
    return {
        "paid invoices": Invoice.objects.filter(status=InvoiceStatus.PAID).count(),
        "succeeded payments": Payment.objects.filter(status=PaymentStatus.SUCCEEDED).count(),
        "event rows": WebhookEvent.objects.count(),
        "sum amount_paid": str(Invoice.objects.aggregate(s=Sum("amount_paid"))["s"]),
        "audit entries": _audit_count(),
    }


def _audit_count() -> int:
    from core.models import AuditEntry

    return AuditEntry.objects.count()


def bench_webhooks(args, base_ms: float) -> None:
    say(f"== webhook ingestion: {args.events:,} payment_intent.succeeded to /stripe/ ==")
    # Pending checkout payments on fresh open invoices of live contracts.
    live = list(
        LeaseContract.objects.filter(status=ContractStatus.ACTIVE)
        .order_by("-id")
        .values_list("id", "customer_id")[: args.events]
    )
    period = TODAY + datetime.timedelta(days=400)
    invoices = Invoice.objects.bulk_create(
        Invoice(
            number=f"WH-{cid}",
            customer_id=customer_id,
            contract_id=cid,
            status=InvoiceStatus.OPEN,
            currency="EUR",
            period_start=period,
            period_end=period + datetime.timedelta(days=29),
            issue_date=TODAY,
            due_date=TODAY + datetime.timedelta(days=14),
            subtotal=Decimal("350.00"),
            tax=Decimal("66.50"),
            total=Decimal("416.50"),
            bill_to_name="Bench",
            bill_to_country="DE",
        )
        for cid, customer_id in live
    )
    payments = Payment.objects.bulk_create(
        Payment(
            invoice=inv,
            provider="stripe",
            kind=PaymentKind.CHECKOUT,
            amount=inv.total,
            currency="EUR",
            idempotency_key=f"bench-{inv.pk}",
            provider_checkout_id=f"cs_bench_{inv.pk}",
        )
        for inv in invoices
    )
    sql("ANALYZE")
    events = []
    for p in payments:
        intent = load(
            "payment_intent",
            id=f"pi_bench_{p.pk}",
            amount=to_minor_units(p.amount),
            amount_received=to_minor_units(p.amount),
            currency="eur",
            customer="cus_bench",
            metadata={"invoice_id": str(p.invoice_id), "payment_id": str(p.pk)},
            status="succeeded",
            latest_charge=f"ch_bench_{p.pk}",
            last_payment_error=None,
            next_action=None,
        )
        events.append(json.dumps(event("payment_intent.succeeded", intent)))
    client = Client()

    def deliver(bodies: list[str]) -> tuple[float, list[float]]:
        latencies = []
        start = time.perf_counter()
        for body in bodies:
            t = time.perf_counter()
            response = client.post(
                "/stripe/", data=body, content_type="application/json",
                HTTP_STRIPE_SIGNATURE=sign(body),
            )  # fmt: skip
            latencies.append((time.perf_counter() - t) * 1000)
            assert response.status_code == 200, (response.status_code, response.content)
        return time.perf_counter() - start, latencies

    elapsed, latencies = deliver(events)
    p50 = statistics.median(latencies)
    say(
        f"first delivery       {len(events):,} events in {elapsed:.1f} s "
        f"({len(events) / elapsed:,.0f} events/s), p50 {p50:.2f} ms "
        f"({p50 / base_ms:.0f}x SELECT 1)"
    )
    chunk = max(1, len(latencies) // 10)
    say(
        "  p50 per tenth of the run (ms): "
        + " ".join(
            f"{statistics.median(latencies[i : i + chunk]):.1f}"
            for i in range(0, chunk * 10, chunk)
        )
    )
    paid = Invoice.objects.filter(pk__in=[i.pk for i in invoices], status=InvoiceStatus.PAID)
    assert paid.count() == len(invoices), paid.count()
    before = state_snapshot()
    dupes = events[:: max(1, len(events) // args.duplicates)][: args.duplicates]
    elapsed, latencies = deliver(dupes)
    after = state_snapshot()
    say(
        f"re-delivered         {len(dupes):,} duplicates in {elapsed:.1f} s "
        f"({len(dupes) / elapsed:,.0f} events/s), p50 {statistics.median(latencies):.2f} ms"
    )
    for key in before:
        say(f"  {key:20s} before {before[key]:>12}  after {after[key]:>12}")
    assert before == after, (before, after)
    redeliveries = WebhookEvent.objects.filter(deliveries__gt=1).count()
    say(f"duplicates changed nothing; {redeliveries:,} event rows count a second delivery")
    say()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--contracts", type=int, default=5_000, help="due in the billing run")
    parser.add_argument("--small-overdue", type=int, default=1_000)
    parser.add_argument("--big-contracts", type=int, default=100_000)
    parser.add_argument("--invoices-per-contract", type=int, default=10)
    parser.add_argument(
        "--overdue", type=lambda v: [int(x) for x in v.split(",")], default=[1_000, 10_000]
    )
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--duplicates", type=int, default=1_000)
    args = parser.parse_args()

    started = time.perf_counter()
    recreate_database()
    flush_queue()
    call_command("migrate", verbosity=0)
    base_ms = select1_ms()
    say(f"baseline: SELECT 1 round trip {base_ms:.3f} ms (median of 2000), today = {TODAY}")
    say()
    try:
        bench_billing(args, base_ms)
        bench_grace(args, base_ms)
        bench_webhooks(args, base_ms)
    finally:
        flush_queue()
    say(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
