"""The invoice rollup (InvoiceRollup) checked against the invoices it adds up.

The rollup is written by database triggers only (migration 0006); this module recomputes
what it should hold and, on request, replaces it. `manage.py check_invoice_rollup [--fix]`
is its command line; tests call it after random histories of invoice writes.
"""

import datetime
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, DecimalField, F, Sum, Value
from django.db.models.functions import Coalesce, TruncMonth

from core.money import ZERO

from .models import NO_DATE, Invoice, InvoiceRollup

Key = tuple[int, str, str, datetime.date, datetime.date]
Sums = tuple[int, Decimal, Decimal, Decimal]
_NOTHING: Sums = (0, ZERO, ZERO, ZERO)


def _month(value) -> datetime.date:
    if value is None:
        return NO_DATE
    if isinstance(value, datetime.datetime):
        value = value.date()
    return value.replace(day=1)


def expected_rollup(customer_id: int | None = None) -> dict[Key, Sums]:
    """What the rollup should hold, computed from the invoices (one aggregate query)."""
    qs = Invoice.objects.order_by()
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    money = DecimalField(max_digits=18, decimal_places=2)
    zero = Value(ZERO, output_field=money)
    rows = (
        qs.annotate(im=TruncMonth("issue_date"), dm=TruncMonth("due_date"))
        .values("customer_id", "currency", "status", "im", "dm")
        .annotate(
            n=Count("id"),
            t=Coalesce(Sum("total"), zero),
            p=Coalesce(Sum("amount_paid"), zero),
            o=Coalesce(
                Sum(
                    F("total")
                    - F("pre_payment_credit_notes_amount")
                    - F("applied_balance")
                    - F("amount_paid"),
                    output_field=money,
                ),
                zero,
            ),
        )
    )
    expected: dict[Key, Sums] = {}
    for row in rows:
        key = (row["customer_id"], row["currency"], row["status"], _month(row["im"]),
               _month(row["dm"]))  # fmt: skip
        expected[key] = _add(expected.get(key, _NOTHING), (row["n"], row["t"], row["p"], row["o"]))
    return expected


def stored_rollup(customer_id: int | None = None) -> dict[Key, Sums]:
    """The rollup's rows that are not all zero."""
    qs = InvoiceRollup.objects.all()
    if customer_id is not None:
        qs = qs.filter(customer_id=customer_id)
    stored = {}
    for r in qs.values_list(
        "customer_id", "currency", "status", "issue_month", "due_month",
        "invoice_count", "total", "amount_paid", "owed",
    ):  # fmt: skip
        sums = (r[5], _cents(r[6]), _cents(r[7]), _cents(r[8]))
        if sums != _NOTHING:
            stored[(r[0], r[1], r[2], _month(r[3]), _month(r[4]))] = sums
    return stored


def _cents(value) -> Decimal:
    return Decimal(value).quantize(Decimal("0.01"))


def _add(a: Sums, b: Sums) -> Sums:
    return (a[0] + b[0], _cents(a[1] + b[1]), _cents(a[2] + b[2]), _cents(a[3] + b[3]))


@dataclass
class Difference:
    key: Key
    stored: Sums
    expected: Sums


def rollup_differences(customer_id: int | None = None) -> list[Difference]:
    expected = {k: v for k, v in expected_rollup(customer_id).items() if v != _NOTHING}
    stored = stored_rollup(customer_id)
    return [
        Difference(key, stored.get(key, _NOTHING), expected.get(key, _NOTHING))
        for key in sorted(set(expected) | set(stored))
        if stored.get(key, _NOTHING) != expected.get(key, _NOTHING)
    ]


def rollup_rebuild(customer_id: int | None = None) -> list[Difference]:
    """Replace the rollup (of one customer, or all) by its recomputation; returns what was
    wrong. Invoice writes wait meanwhile (PostgreSQL: a SHARE lock on the invoices), so no
    change slips between reading the invoices and writing the rollup."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE invoices_invoice IN SHARE MODE")
        differences = rollup_differences(customer_id)
        if differences:
            stale = InvoiceRollup.objects.all()
            if customer_id is not None:
                stale = stale.filter(customer_id=customer_id)
            stale.delete()
            InvoiceRollup.objects.bulk_create(
                InvoiceRollup(
                    customer_id=key[0],
                    currency=key[1],
                    status=key[2],
                    issue_month=key[3],
                    due_month=key[4],
                    invoice_count=n,
                    total=t,
                    amount_paid=p,
                    owed=o,
                )
                for key, (n, t, p, o) in expected_rollup(customer_id).items()
            )
    return differences
