"""The billing run's chunk path (issue 20): a fixed number of queries per chunk, one message
per chunk, the same invoices as the per-contract path, gapless numbers under concurrency."""

import datetime
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing.collections import tasks as collection_tasks
from billing.invoices import services
from billing.invoices import tasks as invoice_tasks
from billing.invoices.balance import customer_balance_adjust
from billing.invoices.models import Invoice, InvoiceStatus
from contracts.models import LeaseContract
from core.models import AuditEntry
from tests.factories import CustomerFactory, PaymentMethodFactory, make_contract
from tests.threads import run_together

D = datetime.date
ON_POSTGRES = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the chunk path is PostgreSQL's"
)
pytestmark = ON_POSTGRES


def _contracts(n: int, **kw) -> list[LeaseContract]:
    customers = [CustomerFactory() for _ in range(max(1, n // 3))]
    return [make_contract(customers[i % len(customers)], **kw) for i in range(n)]


def _run_counting(today: datetime.date) -> tuple[services.BillingRunResult, int]:
    with CaptureQueriesContext(connection) as queries:
        result = services.billing_run(today=today)
    return result, len(queries)


@pytest.mark.django_db
def test_a_run_of_n_contracts_makes_at_most_six_queries_per_invoice_and_flat_per_chunk():
    small = _contracts(3, started_on=D(2026, 1, 1))
    result, small_queries = _run_counting(D(2026, 1, 1))
    assert len(result.invoice_ids) == 3 and not result.errors
    big = _contracts(30, blocks=2, started_on=D(2026, 2, 1))
    result, big_queries = _run_counting(D(2026, 2, 1))
    # The 3 older contracts' February invoices are in this run too.
    assert len(result.invoice_ids) == 33 and not result.errors
    assert big_queries <= 6 * 33 + 15
    # Not per invoice at all: one chunk of 33 costs what a chunk of 3 did (that one also
    # looked up the invoice's content type for the audit entries, cached since).
    assert big_queries <= small_queries <= 16, (small_queries, big_queries)
    assert Invoice.objects.filter(status=InvoiceStatus.OPEN).count() == 36
    assert {c.invoices.count() for c in big} == {1} and {c.invoices.count() for c in small} == {2}


@pytest.mark.django_db
def test_catch_up_and_proration_in_the_chunk_path_give_the_per_contract_path_s_invoices():
    """Two identical contracts: one billed by a chunk, the other alone. Same periods,
    amounts, lines, taxes, snapshot and audit actions; numbers consecutive."""
    customer = CustomerFactory(buyer_reference="BR-1")
    twins = [
        make_contract(customer, blocks=2, price="310.00", started_on=D(2026, 1, 20), anchor=1)
        for _ in range(2)
    ]
    chunked, alone = twins
    by_chunk = services.bill_contracts(contract_ids=[chunked.pk], today=D(2026, 3, 5))
    by_itself = services.contract_bill_due_periods(contract_id=alone.pk, today=D(2026, 3, 5))
    assert len(by_chunk.invoice_ids) == 3 == len(by_itself), "Jan (prorated), Feb, Mar"

    def shape(contract):
        rows = []
        for inv in contract.invoices.order_by("period_start"):
            rows.append(
                (
                    inv.period_start,
                    inv.period_end,
                    inv.billing_reason,
                    inv.status,
                    inv.subtotal,
                    inv.tax,
                    inv.total,
                    inv.issue_date,
                    inv.due_date,
                    inv.bill_to_name,
                    inv.bill_to_address,
                    inv.buyer_reference,
                    inv.state_version,
                    [
                        (ln.position, ln.description.split(",")[1], ln.amount, ln.tax_rate)
                        for ln in inv.lines.all()
                    ],
                    [(t.name, t.rate, t.taxable_amount, t.amount) for t in inv.tax_lines.all()],
                    sorted(
                        AuditEntry.objects.filter(object_id=str(inv.pk)).values_list(
                            "action", flat=True
                        )
                    ),
                )
            )
        return rows

    assert shape(chunked) == shape(alone)
    first = chunked.invoices.order_by("period_start").first()
    assert first.lines.first().unit_price == Decimal("120.00"), "310 * 12/31"
    assert first.total == Decimal("285.60"), "2 x 120.00 + 19 % VAT"
    chunked.refresh_from_db()
    assert chunked.next_billing_date == D(2026, 4, 1)
    opened = AuditEntry.objects.get(action="invoice.open", object_id=str(first.pk))
    assert opened.object_repr == first.number and opened.after["number"] == first.number
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 7)]


@pytest.mark.django_db
def test_a_chunk_sends_one_message_and_its_worker_one_pdf_and_one_charge_task(
    monkeypatch, django_capture_on_commit_callbacks
):
    carded = CustomerFactory()
    PaymentMethodFactory(customer=carded)
    for i in range(5):
        make_contract(carded if i < 2 else CustomerFactory(), started_on=D(2026, 1, 1))
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(
        "core.queue.enqueue", lambda task, *args, **kw: sent.append((task.name, args)) or True
    )
    with django_capture_on_commit_callbacks(execute=True):
        result = services.billing_run(today=D(2026, 1, 1))
    ids = sorted(result.invoice_ids)
    assert len(ids) == 5
    assert sent == [("invoices.invoices_issued", (ids,))], "one message for the chunk"
    sent.clear()
    with django_capture_on_commit_callbacks(execute=True):
        invoice_tasks.invoices_issued(ids)
    carded_ids = sorted(Invoice.objects.filter(customer=carded).values_list("pk", flat=True))
    assert sorted(sent) == [
        ("collections.charge_invoices", (carded_ids,)),
        ("invoices.render_invoice_pdfs", (ids,)),
    ]


@pytest.mark.django_db
def test_the_chunk_s_charge_task_charges_each_card_once(settings):
    carded = CustomerFactory()
    PaymentMethodFactory(customer=carded)
    contracts = [make_contract(carded, started_on=D(2026, 1, 1)) for _ in range(2)]
    ids = services.billing_run(today=D(2026, 1, 1)).invoice_ids
    collection_tasks.charge_invoices(ids)
    collection_tasks.charge_invoices(ids)  # a retry after a partial run
    for contract in contracts:
        invoice = contract.invoices.get()
        assert invoice.status == InvoiceStatus.PAID
        assert invoice.payments.count() == 1


@pytest.mark.django_db
def test_customers_with_credit_and_zero_totals_take_the_per_contract_path():
    customer = CustomerFactory()
    customer_balance_adjust(
        customer_id=customer.pk, currency="EUR", amount=Decimal("50.00"), actor="t", note="goodwill"
    )
    with_credit = make_contract(customer, price="100.00", started_on=D(2026, 1, 1))
    free = make_contract(CustomerFactory(), price="0.00", started_on=D(2026, 1, 1))
    plain = make_contract(CustomerFactory(), started_on=D(2026, 1, 1))
    result = services.billing_run(today=D(2026, 1, 1))
    assert not result.errors and len(result.invoice_ids) == 3
    credited = with_credit.invoices.get()
    assert credited.applied_balance == Decimal("50.00")
    assert credited.amount_remaining == Decimal("69.00")
    assert free.invoices.get().status == InvoiceStatus.PAID
    assert plain.invoices.get().status == InvoiceStatus.OPEN


@pytest.mark.django_db(transaction=True)
def test_two_runs_and_a_manual_finalisation_racing_bill_once_with_gapless_numbers(
    settings, monkeypatch
):
    settings.BILLING_CHUNK_SIZE = 4
    # The race is the billing; the follow-up tasks (eager here: PDFs rendered inside the
    # threads) would only stretch it past run_together's timeout on a busy machine.
    monkeypatch.setattr("core.queue.enqueue", lambda *args, **kw: True)
    contracts = _contracts(12, started_on=D(2026, 1, 1))
    draft_contract = make_contract(CustomerFactory(), started_on=D(2026, 6, 1))
    (draft,) = services.contract_bill_due_periods(
        contract_id=draft_contract.pk, today=D(2026, 6, 1), finalize=False
    )
    results, errors = run_together(
        lambda: services.billing_run(today=D(2026, 1, 1)),
        lambda: services.billing_run(today=D(2026, 1, 1)),
        lambda: services.invoice_finalize(invoice_id=draft.pk, actor="t", today=D(2026, 1, 1)),
    )
    assert errors == []
    issued = results[0].invoice_ids + results[1].invoice_ids
    assert len(issued) == len(set(issued)) == 12
    assert not results[0].errors and not results[1].errors
    assert {c.invoices.count() for c in contracts} == {1}
    numbers = sorted(Invoice.objects.values_list("number", flat=True))
    assert numbers == [f"INV-2026-{n:06d}" for n in range(1, 14)]
