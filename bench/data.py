"""Bulk loading shared by the benchmarks (after django.setup(), on a scratch database)."""

import datetime

from django.conf import settings
from django.db import connection


def recreate_database() -> None:
    """Drop and create the configured database; bench.scratch has checked its name."""
    import psycopg

    from bench.scratch import PREFIX

    db = settings.DATABASES["default"]
    assert db["NAME"].startswith(PREFIX), db["NAME"]
    admin = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db["NAME"]}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db["NAME"]}"')


def sql(statement: str, params=None) -> None:
    with connection.cursor() as cur:
        cur.execute(statement, params)


def load_contracts(*, first: int, count: int, customers: int, next_billing: datetime.date) -> None:
    """`count` contracts numbered from `first`, one /24 block each, over `customers` new
    customers (German businesses). Through bulk_create, so fields added to the models later
    get their defaults (raw SQL here broke when customers gained columns)."""
    from contracts.models import Customer, IPBlock, LeaseContract

    batch = 5000
    made = Customer.objects.bulk_create(
        (
            Customer(
                name=f"Bench Customer {g}",
                email=f"c{g}@example.com",
                address_line1=f"Street {g}",
                postal_code="10115",
                city="Berlin",
                country="DE",
                is_business=True,
                tax_id=f"DE{g:09d}",
                default_currency="EUR",
                stripe_customer_id=f"cus_bench{g}",
            )
            for g in range(first, first + customers)
        ),
        batch_size=batch,
    )
    blocks = IPBlock.objects.bulk_create(
        (
            IPBlock(
                prefix=f"{a >> 24}.{a >> 16 & 255}.{a >> 8 & 255}.0/24",
                first_address=a,
                last_address=a + 255,
                registry="ripe",
                status="leased",
            )
            for a in (167772160 + g * 256 for g in range(first, first + count))
        ),
        batch_size=batch,
    )
    contracts = LeaseContract.objects.bulk_create(
        (
            LeaseContract(
                customer=made[i % customers],
                price_per_block="350.00",
                currency="EUR",
                billing_anchor_day=next_billing.day,
                status="active",
                started_on=datetime.date(2020, 1, next_billing.day),
                next_billing_date=next_billing,
            )
            for i in range(count)
        ),
        batch_size=batch,
    )
    through = LeaseContract.blocks.through
    through.objects.bulk_create(
        (
            through(leasecontract_id=c.pk, ipblock_id=b.pk)
            for c, b in zip(contracts, blocks, strict=True)
        ),
        batch_size=batch,
    )
