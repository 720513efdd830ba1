"""The invoice rollup (issue 20) under random histories of invoice writes.

Hypothesis draws a history of writes through every path the ORM offers — create,
bulk_create, save() of a changed invoice, queryset.update() of several, delete of one or
several, a save that changes nothing the rollup adds up — for two customers, in two
currencies, in every status, with and without issue and due dates. The database triggers
(migration 0006) keep the rollup; after the history it must equal the recomputation from
the invoices, and the list's count and summary cards read from it must equal the same
figures computed over the invoices, for a drawn date range and a drawn "today".
"""

import datetime
import io
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db.models import F
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra.django import TestCase

from billing.invoices import selectors
from billing.invoices.filters import STATUS_CHOICES, InvoiceQuery
from billing.invoices.models import Invoice, InvoiceRollup, InvoiceStatus
from billing.invoices.rollup import rollup_differences
from tests.factories import CustomerFactory

STATUSES = [s.value for s in InvoiceStatus]
DAY0 = datetime.date(2026, 1, 1)

days = st.integers(min_value=0, max_value=150).map(lambda n: DAY0 + datetime.timedelta(days=n))
# Quarters: exact in binary floating point too, which SQLite (the demo) checks the
# invoice's constraints in (total = subtotal + tax would fail on 0.01 + 2.26).
cents = st.integers(min_value=0, max_value=20_000).map(lambda n: Decimal(n) / 4)


def _part(percent: int, of: Decimal) -> Decimal:
    return (percent * of / 25).quantize(Decimal("1"), rounding="ROUND_DOWN") / 4


@st.composite
def invoice_values(draw):
    status = draw(st.sampled_from(STATUSES))
    subtotal = draw(cents)
    tax = draw(cents)
    total = subtotal + tax
    issued = None if status == "draft" and draw(st.booleans()) else draw(days)
    due = None if issued is None else issued + datetime.timedelta(days=draw(st.integers(0, 40)))
    balance = _part(draw(st.integers(0, 100)), total) if draw(st.booleans()) else Decimal(0)
    pre = _part(draw(st.integers(0, 100)), total - balance)
    paid = _part(draw(st.integers(0, 100)), total - balance - pre)
    return {
        "customer": draw(st.integers(0, 1)),
        "currency": draw(st.sampled_from(["EUR", "USD"])),
        "status": status,
        "issue_date": issued,
        "due_date": due,
        "subtotal": subtotal,
        "tax": tax,
        "total": total,
        "applied_balance": balance,
        "pre_payment_credit_notes_amount": pre,
        "amount_paid": paid,
    }


steps = st.one_of(
    st.tuples(st.just("create"), invoice_values()),
    st.tuples(st.just("bulk_create"), st.lists(invoice_values(), min_size=1, max_size=4)),
    st.tuples(st.just("save"), st.integers(0, 50), invoice_values()),
    st.tuples(st.just("update_status"), st.sampled_from(STATUSES), st.sampled_from(STATUSES)),
    st.tuples(st.just("pay_all_open"), st.just(None)),
    st.tuples(st.just("touch"), st.integers(0, 50)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
    st.tuples(st.just("delete_status"), st.sampled_from(STATUSES)),
)


class RollupHistories(TestCase):
    @classmethod
    def setUpTestData(cls):
        cls.customers = [CustomerFactory(), CustomerFactory()]

    def _invoice(self, values: dict, serial: int) -> Invoice:
        values = dict(values)
        customer = self.customers[values.pop("customer")]
        number = None if values["status"] == "draft" else f"T-{serial:06d}"
        return Invoice(
            customer=customer,
            number=number,
            period_start=DAY0,
            period_end=DAY0 + datetime.timedelta(days=29),
            **values,
        )

    def _nth(self, n: int) -> Invoice | None:
        ids = list(Invoice.objects.order_by("id").values_list("id", flat=True))
        return Invoice.objects.get(pk=ids[n % len(ids)]) if ids else None

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        history=st.lists(steps, max_size=25),
        today=days,
        date_from=st.none() | days,
        date_to=st.none() | days,
    )
    def test_random_histories_keep_the_rollup_exact(self, history, today, date_from, date_to):
        serial = 0
        for step in history:
            note(repr(step))
            kind = step[0]
            serial += 10
            if kind == "create":
                self._invoice(step[1], serial).save()
            elif kind == "bulk_create":
                Invoice.objects.bulk_create(
                    [self._invoice(v, serial + i) for i, v in enumerate(step[1])]
                )
            elif kind == "save" and (invoice := self._nth(step[1])):
                fresh = self._invoice(step[2], serial)
                for name in step[2]:
                    if name != "customer":
                        setattr(invoice, name, getattr(fresh, name))
                invoice.customer = fresh.customer
                invoice.number = invoice.number or fresh.number
                if invoice.status == "draft":
                    invoice.number = None
                invoice.save()
            elif kind == "update_status":
                qs = Invoice.objects.filter(status=step[1])
                if step[2] == "draft":
                    qs.update(status=step[2], number=None)
                else:
                    qs.filter(number__isnull=False).update(status=step[2])
            elif kind == "pay_all_open":
                Invoice.objects.filter(status="open").update(
                    status="paid",
                    amount_paid=F("total")
                    - F("applied_balance")
                    - F("pre_payment_credit_notes_amount"),
                )
            elif kind == "touch" and (invoice := self._nth(step[1])):
                Invoice.objects.filter(pk=invoice.pk).update(state_version=F("state_version") + 1)
            elif kind == "delete" and (invoice := self._nth(step[1])):
                invoice.delete()
            elif kind == "delete_status":
                Invoice.objects.filter(status=step[1]).delete()

        assert rollup_differences() == []

        if date_from and date_to and date_from > date_to:
            date_from, date_to = date_to, date_from
        for customer in self.customers:
            direct = selectors.invoice_summary_direct(
                customer, today=today, date_from=date_from, date_to=date_to
            )
            from_rollup = selectors.invoice_summary(
                customer, today=today, date_from=date_from, date_to=date_to
            )
            assert from_rollup == direct
            for status, _ in STATUS_CHOICES:
                query = InvoiceQuery(status=status, date_from=date_from, date_to=date_to)
                filtered = selectors.invoice_filter(customer, query, today=today)
                totals = selectors.invoice_list_totals(
                    customer, query, today=today, filtered=filtered
                )
                assert totals.count == filtered.count(), status


@pytest.mark.django_db
def test_the_check_command_reports_and_fixes_a_damaged_rollup():
    customer = CustomerFactory()
    Invoice.objects.create(
        customer=customer,
        number="T-1",
        status="open",
        currency="EUR",
        period_start=DAY0,
        period_end=DAY0,
        issue_date=DAY0,
        due_date=DAY0,
        subtotal=Decimal("10.00"),
        total=Decimal("10.00"),
    )
    out = io.StringIO()
    call_command("check_invoice_rollup", stdout=out)
    assert "matches" in out.getvalue()

    InvoiceRollup.objects.filter(customer=customer).update(invoice_count=7)
    out = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("check_invoice_rollup", stdout=out)
    assert f"customer {customer.pk} EUR open issued 2026-01" in out.getvalue()
    assert "(7, 10.00, 0.00, 10.00)" in out.getvalue()

    call_command("check_invoice_rollup", "--fix", stdout=io.StringIO())
    assert rollup_differences() == []
    assert InvoiceRollup.objects.get(customer=customer, status="open").invoice_count == 1
