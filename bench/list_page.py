"""Benchmark: the invoice list against a trivial one-query view, through the same middleware.

    BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/portal_bench \
        .venv/bin/python bench/list_page.py [--total 1000000] [--mine 100000] [--rounds 15]

Builds (once; --rebuild to start over) a PostgreSQL database with `--total` invoices,
`--mine` of them for one customer, one line each, then prints the median time of each
list page scenario and its ratio to the trivial view, three ways: the same browser
again (the page cache), a new browser (the cached body in a freshly rendered page) and
right after an invoice change (everything computed again). Target: every ratio <= 3.
"""

import argparse
import itertools
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
                state_version, created_at, updated_at)
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
                1, now(), now()
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
        cur.execute("ANALYZE invoices_invoice")
        cur.execute("ANALYZE invoices_invoiceline")
    print(f"built in {time.perf_counter() - started:.0f}s", flush=True)
    return bench_co


def median_ms(request, rounds: int, prepare=lambda: None) -> float:
    """Median of `rounds` timed calls of request(); prepare() runs untimed before each."""
    prepare()
    request()  # warm caches and connections
    times = []
    for _ in range(rounds):
        prepare()
        t = time.perf_counter()
        response = request()
        times.append((time.perf_counter() - t) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(times)


def browser(user, *, csrf_secret: str | None = None) -> Client:
    client = Client()
    client.force_login(user)
    if csrf_secret:  # as after logging in through the form
        client.cookies["csrftoken"] = csrf_secret
    return client


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--mine", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--cache",
        choices=["locmem", "redis"],
        default="locmem",
        help="the cache (and session cache): the test settings' locmem, or Redis db 9 "
        "as in production",
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
    last_page = -(-args.mine // 25)
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    if args.cache == "redis":
        caches = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/9"),
            }
        }

    with override_settings(
        ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], DEBUG=False, CACHES=caches
    ):
        from billing.invoices.selectors import invoice_list_changed

        secrets = (f"{n:032d}" for n in itertools.count())
        repeat = browser(user, csrf_secret=next(secrets))
        base = median_ms(lambda: repeat.get("/bench/trivial/"), args.rounds)
        print(f"cache: {args.cache}; trivial view: {base:.2f} ms (median of {args.rounds})")
        print(f"{'scenario':15s} {'repeat view':>20s} {'new browser':>20s} {'after a change':>20s}")
        scenarios = {
            "default": "/invoices/",
            "status=open": "/invoices/?status=open",
            "search number": f"/invoices/?q={some_number}",
            "last page": f"/invoices/?page={last_page}",
        }
        fresh = {}  # the new browser of the current round
        for name, url in scenarios.items():
            # The same browser again: served whole from the page cache.
            warm = median_ms(lambda url=url: repeat.get(url), args.rounds)
            # Another browser (its own CSRF secret): the page around the cached body.
            new = median_ms(
                lambda url=url: fresh["client"].get(url),
                args.rounds,
                prepare=lambda: fresh.update(client=browser(user, csrf_secret=next(secrets))),
            )
            # After an invoice change: count, summary and rows computed again.
            changed = median_ms(
                lambda url=url: repeat.get(url),
                args.rounds,
                prepare=lambda: invoice_list_changed(customer.pk),
            )
            print(
                f"{name:15s}"
                + "".join(f" {ms:8.2f} ms {ms / base:6.2f}x" for ms in (warm, new, changed))
            )


if __name__ == "__main__":
    main()
