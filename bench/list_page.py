"""Benchmark: /invoices/ against a trivial one-query view through the same stack, A/B.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench \
        .venv/bin/python bench/list_page.py [--total 1000000] [--mine 100000] [--rounds 30]
        [--only "middle (keyset)"]

Builds (once; reused while the customer has `--mine` invoices) a PostgreSQL database with
`--total` invoices, `--mine` of them for one customer, one line each. Then, in every
round, each scenario is timed next to the trivial view (A B in even rounds, B A in odd
ones, so drift and neighbours hit both alike): its first view, and for "repeat" the same
request again. Printed per scenario: median ms of both, the median of the per-round
ratios and their spread (min, quartiles, max). Goals (issue 20): first views <= 4x,
repeat views <= 2x. A first view is computed: its cached body and totals
(billing.invoices.list_cache) are deleted just before it, untimed, so it pays the misses
and the stores ("next page (filter seen)" keeps the totals: another page of a filter just
shown); the repeat view is what a reload gets (the body from the cache). Sessions come
from the cache, as on the trivial view.
"""

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.scratch import use_scratch  # noqa: E402

use_scratch("portal_bench")
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import include, path  # noqa: E402

from billing.invoices.models import Invoice  # noqa: E402
from contracts.models import Customer, Membership, Role  # noqa: E402

BENCH_USER = "bench@example.com"
PREFIX = "BEN-"


def trivial(request):
    """One query, no template: the floor every page pays (middleware, session, auth)."""
    return HttpResponse(str(Invoice.objects.filter(pk=0).exists()))


urlpatterns = [path("bench/trivial/", trivial), path("", include("config.urls"))]


def ensure_database() -> None:
    import psycopg

    db = settings.DATABASES["default"]
    admin = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]]
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def build(total: int, mine: int) -> Customer:
    from django.contrib.auth import get_user_model

    User = get_user_model()
    bench_co = Customer.objects.filter(name="Bench Networks GmbH").first()
    if bench_co and Invoice.objects.filter(customer=bench_co).count() == mine:
        return bench_co
    print(f"building {total:,} invoices ({mine:,} for one customer) ...", flush=True)
    started = time.perf_counter()
    with connection.cursor() as cur:
        cur.execute(
            "DELETE FROM invoices_invoiceline WHERE invoice_id IN "
            "(SELECT id FROM invoices_invoice WHERE number LIKE %s)",
            [PREFIX + "%"],
        )
        cur.execute("DELETE FROM invoices_invoice WHERE number LIKE %s", [PREFIX + "%"])
    bench_co = bench_co or Customer.objects.create(
        name="Bench Networks GmbH", email="b@example.com", country="DE", tax_id="DE999999999"
    )
    others = [
        Customer.objects.get_or_create(
            name=f"Bench Other {i}", defaults={"email": f"o{i}@example.com", "country": "DE"}
        )[0].pk
        for i in range(90)
    ]
    user = User.objects.filter(username=BENCH_USER).first() or User.objects.create_user(
        BENCH_USER, BENCH_USER, "bench-password"
    )
    Membership.objects.get_or_create(user=user, customer=bench_co, defaults={"role": Role.OWNER})
    with connection.cursor() as cur:
        cur.execute(
            """
            INSERT INTO invoices_invoice (
                number, customer_id, contract_id, status, billing_reason, currency,
                period_start, period_end, issue_date, due_date, subtotal, tax, total,
                amount_paid, amount_refunded, bill_to_name, bill_to_address, bill_to_country,
                bill_to_tax_id, bill_to_email, tax_note, paid_at, paid_out_of_band,
                state_version, created_at, updated_at, buyer_reference, document_language,
                purchase_order_reference, bill_to_city, bill_to_line1, bill_to_line2,
                bill_to_postal_code, bill_to_state, applied_balance,
                post_payment_credit_notes_amount, pre_payment_credit_notes_amount)
            SELECT
                %(prefix)s || lpad(g::text, 9, '0'),
                CASE WHEN g <= %(mine)s THEN %(me)s ELSE (%(others)s::bigint[])[1 + g %% 90] END,
                NULL,
                CASE WHEN g %% 10 = 0 THEN 'open' WHEN g %% 10 = 1 THEN 'void' ELSE 'paid' END,
                'subscription_cycle',
                CASE WHEN g %% 7 = 0 THEN 'USD' ELSE 'EUR' END,
                d, d + 29, d, d + 14,
                100.00, 19.00, 119.00,
                CASE WHEN g %% 10 > 1 THEN 119.00 ELSE 0 END, 0,
                'Bench', '', 'DE', 'DE999999999', 'b@example.com', '',
                CASE WHEN g %% 10 > 1 THEN (d + 3)::timestamptz END, false,
                1, now(), now(), '', '', '', '', '', '', '', '', 0, 0, 0
            FROM generate_series(1, %(total)s) AS g,
                 LATERAL (SELECT DATE '2016-01-01' + (g %% 3650) AS d) AS dates
            """,
            {"prefix": PREFIX, "mine": mine, "me": bench_co.pk, "others": others, "total": total},
        )
        cur.execute(
            """
            INSERT INTO invoices_invoiceline (invoice_id, position, description, block_id,
                period_start, period_end, quantity, unit_price, amount, tax_rate)
            SELECT id, 0, 'IPv4 lease 10.' || (id %% 256) || '.' || (id / 256 %% 256) || '.0/24',
                   NULL, period_start, period_end, 1, subtotal, subtotal, 19
            FROM invoices_invoice WHERE number LIKE %s
            """,
            [PREFIX + "%"],
        )
        # As autovacuum would have by now: statistics, and the visibility map that lets an
        # old ?page=N link find its place by an index-only scan.
        cur.execute("VACUUM ANALYZE invoices_invoice")
        cur.execute("VACUUM ANALYZE invoices_invoiceline")
    print(f"built in {time.perf_counter() - started:.0f}s", flush=True)
    return bench_co


def browser(user, *, csrf_secret: str | None = None) -> Client:
    client = Client()
    client.force_login(user)
    if csrf_secret:  # as after logging in through the form
        client.cookies["csrftoken"] = csrf_secret
    return client


def cursor_at(customer, offset: int, sort: str = "-date") -> str:
    """The ?cursor= of the page that starts after the invoice at `offset` (sort order)."""
    from billing.invoices.filters import Cursor
    from billing.invoices.selectors import invoice_ordered

    row = invoice_ordered(
        Invoice.objects.filter(customer=customer), sort_key="date", descending=True
    ).values_list("issue_date", "id")[offset]
    return Cursor(sort, row[0], row[1], True).encode()


# Scenarios whose first view keeps the cached totals of its filter (a page of a filter
# the person has seen); every other first view computes them too.
TOTALS_SEEN = {"next page (filter seen)"}


def quartiles(values: list[float]) -> tuple[float, float, float, float, float]:
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return min(values), q[0], statistics.median(values), q[2], max(values)


def timed(client: Client, url: str) -> float:
    t = time.perf_counter()
    response = client.get(url)
    elapsed = (time.perf_counter() - t) * 1000
    assert response.status_code == 200, (url, response.status_code)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--mine", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--only", default="", help="comma-separated scenario names")
    parser.add_argument(
        "--cache",
        choices=["locmem", "redis"],
        default="locmem",
        help="the cache (sessions): the test settings' locmem, or Redis db 9 as in production",
    )
    args = parser.parse_args()

    ensure_database()
    call_command("migrate", verbosity=0)
    customer = build(args.total, args.mine)
    user = Membership.objects.get(customer=customer).user
    some_number = (
        Invoice.objects.filter(customer=customer)
        .order_by("id")
        .values_list("number", flat=True)[args.mine // 2]
    )
    changing = list(
        Invoice.objects.filter(customer=customer, status="open")
        .order_by("id")
        .values_list("id", flat=True)[:50]
    )
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if args.cache == "redis":
        caches = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
            }
        }
    scenarios = {
        "first page": "/invoices/",
        "next page (keyset)": f"/invoices/?cursor={cursor_at(customer, 24)}",
        "middle (keyset)": f"/invoices/?cursor={cursor_at(customer, args.mine // 2)}",
        "last page": "/invoices/?last=1",
        "old link ?page=2000": "/invoices/?page=2000",
        "status=open": "/invoices/?status=open",
        "status=overdue": "/invoices/?status=overdue",
        "search number": f"/invoices/?q={some_number}",
        "date range": "/invoices/?date_from=2019-03-10&date_to=2021-07-20",
        "jump to date": "/invoices/?jump=2020-06-15",
        "after a change": "/invoices/",
        # Another page of a filter already shown (the first page, just before): its count
        # and cards come from the cache, only the body is computed.
        "next page (filter seen)": f"/invoices/?cursor={cursor_at(customer, 49)}",
    }
    if args.only:
        chosen = {n.strip() for n in args.only.split(",")}
        scenarios = {k: v for k, v in scenarios.items() if k in chosen}

    from urllib.parse import urlsplit

    from django.core.cache import cache
    from django.http import QueryDict
    from django.utils import timezone

    from billing.invoices import list_cache

    def body_key(url: str) -> str:
        fresh = Customer.objects.get(pk=customer.pk)  # the version as the database has it
        version = list_cache.list_version(fresh)
        params = QueryDict(urlsplit(url).query)
        return list_cache.body_key(customer.pk, version, params, today=timezone.localdate(),
                                   can_pay=True, language=settings.LANGUAGE_CODE)  # fmt: skip

    def forget(url: str, *, totals: bool = True) -> None:
        """Delete the cached body of `url` and (unless totals=False) the cached count and
        cards of its filter, so the next view of it is a first view."""
        cache.delete(body_key(url))
        if totals:
            fresh = Customer.objects.get(pk=customer.pk)
            version = list_cache.list_version(fresh)
            params = QueryDict(urlsplit(url).query)
            cache.delete(
                list_cache.totals_key(customer.pk, version, params, today=timezone.localdate())
            )

    def change(round_no: int) -> None:
        # A payment-like write on one of the customer's open invoices (the rollup's
        # triggers run in its transaction), committed before the view runs.
        pk = changing[round_no % len(changing)]
        paid = "1.00" if round_no % 2 == 0 else "0.00"
        Invoice.objects.filter(pk=pk).update(amount_paid=paid)

    with override_settings(
        ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], DEBUG=False, CACHES=caches
    ):
        client = browser(user, csrf_secret="0" * 32)
        for url in ["/bench/trivial/", *scenarios.values()]:  # warm up
            timed(client, url)
            timed(client, url)
        for url in scenarios.values():  # forget() deletes what the view stored
            assert cache.get(body_key(url)) is not None, url
        first = {name: [] for name in scenarios}
        repeat = {name: [] for name in scenarios}
        base_first = {name: [] for name in scenarios}
        base_repeat = {name: [] for name in scenarios}
        for r in range(args.rounds):
            for name, url in scenarios.items():
                if name == "after a change":
                    change(r)
                forget(url, totals=name not in TOTALS_SEEN)
                if r % 2 == 0:
                    base_first[name].append(timed(client, "/bench/trivial/"))
                    first[name].append(timed(client, url))
                    repeat[name].append(timed(client, url))
                    base_repeat[name].append(timed(client, "/bench/trivial/"))
                else:
                    first[name].append(timed(client, url))
                    base_first[name].append(timed(client, "/bench/trivial/"))
                    base_repeat[name].append(timed(client, "/bench/trivial/"))
                    repeat[name].append(timed(client, url))
        trivial = [t for ts in base_first.values() for t in ts]
        print(
            f"cache: {args.cache}; {args.rounds} rounds, interleaved A/B; trivial view median "
            f"{statistics.median(trivial):.2f} ms (min {min(trivial):.2f}, max {max(trivial):.2f})"
        )
        print(
            f"{'scenario':22s} {'trivial':>8s} {'page':>8s}  ratio: min    q1  median    q3   max"
        )
        for kind, times, bases in (("first view", first, base_first),
                                   ("repeat view", repeat, base_repeat)):  # fmt: skip
            print(f"-- {kind}")
            for name in scenarios:
                ratios = [a / b for a, b in zip(times[name], bases[name], strict=True)]
                lo, q1, med, q3, hi = quartiles(ratios)
                print(
                    f"{name:22s} {statistics.median(bases[name]):6.2f}ms "
                    f"{statistics.median(times[name]):6.2f}ms  "
                    f"{lo:5.2f} {q1:5.2f} {med:6.2f}x {q3:5.2f} {hi:5.2f}"
                )


if __name__ == "__main__":
    main()
