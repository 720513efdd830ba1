"""The billing run's chunk path (issue 20): a fixed number of queries per chunk, one message
per chunk, the same invoices as the per-contract path, gapless numbers under concurrency."""

import datetime
import json
import re
from decimal import Decimal

import pytest
from django.contrib.contenttypes.models import ContentType
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
    # The COPYs (lines, tax rows, draft entries, staged invoices) are counted like any
    # statement (core.db.copy_rows goes through Django's cursor wrapper).
    assert sum(q["sql"].startswith("COPY ") for q in queries) == 4
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
                        AuditEntry.objects.filter(
                            content_type__model="invoice", object_id=str(inv.pk)
                        ).values_list("action", flat=True)
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


def _everything(contract: LeaseContract) -> list:
    """Every stored value of the contract's invoices, lines, tax rows and audit entries,
    less what differs between any two invoices by nature: ids, numbers, timestamps, the
    contract and its blocks (the number is compared through its place in the entries)."""
    skip_invoice = {"id", "number", "contract_id", "created_at", "updated_at"}
    rows = []
    for inv in contract.invoices.order_by("period_start"):
        values = {f.attname: getattr(inv, f.attname) for f in Invoice._meta.concrete_fields}
        entries = []
        # By type as well as id: an IP block with the same id has entries of its own.
        invoice_type = ContentType.objects.get_for_model(Invoice)
        for e in AuditEntry.objects.filter(
            content_type=invoice_type, object_id=str(inv.pk)
        ).order_by("pk"):
            after = {**e.after, "number": e.after["number"] == inv.number} if "number" in (
                e.after
            ) else e.after  # fmt: skip
            entries.append((
                e.action, e.actor_id, e.actor_label, e.customer_id, e.content_type_id,
                # The id as a whole token: as text it also hit the digits of 10.0.1.0/24.
                re.sub(rf"(?<![\w.]){inv.pk}(?![\w.])", "<pk>", e.object_repr).replace(
                    inv.number, "<number>"
                ),
                e.before, after, e.note,
            ))  # fmt: skip
        rows.append(
            (
                {k: v for k, v in values.items() if k not in skip_invoice},
                [
                    (
                        ln.position,
                        ln.description.split(",", 1)[1],
                        ln.period_start,
                        ln.period_end,
                        ln.quantity,
                        ln.unit_price,
                        ln.amount,
                        ln.tax_rate,
                    )
                    for ln in inv.lines.order_by("position")
                ],
                [
                    (t.name, t.rate, t.taxable_amount, t.amount, t.note)
                    for t in inv.tax_lines.order_by("pk")
                ],
                entries,
            )
        )
    # The blocks differ between two contracts by nature (audit documents name them).
    text = json.dumps(rows, default=str, sort_keys=True)
    for n, prefix in enumerate(sorted(str(b.prefix) for b in contract.blocks.all())):
        text = text.replace(prefix, f"<block {n}>")
    return json.loads(text)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "details",
    [
        {"country": "DE", "address_line2": "Hinterhaus", "state": "BE", "buyer_reference": "B-7",
         "purchase_order_reference": "PO-1", "document_language": "de"},
        {"country": "AT", "tax_id": "ATU13585627", "is_business": True},  # reverse charge
        {"country": "US", "postal_code": "", "city": "Austin"},  # outside the EU
    ],
)  # fmt: skip
def test_the_chunk_path_writes_every_field_and_entry_the_per_contract_path_writes(details):
    """Row by row, field by field: invoices (snapshot, taxes, dates, amounts, versions),
    lines, tax rows and the draft/open audit entries with their before/after documents."""
    customer = CustomerFactory(**details)
    chunked, alone = (
        make_contract(customer, blocks=2, price="310.00", started_on=D(2026, 1, 20), anchor=1)
        for _ in range(2)
    )
    by_chunk = services.bill_contracts(contract_ids=[chunked.pk], today=D(2026, 3, 5))
    by_itself = services.contract_bill_due_periods(contract_id=alone.pk, today=D(2026, 3, 5))
    assert len(by_chunk.invoice_ids) == 3 == len(by_itself) and not by_chunk.errors
    assert set(by_chunk.invoice_ids).isdisjoint(i.pk for i in by_itself)
    assert _everything(chunked) == _everything(alone)
    # The chunk's entries: a draft and an "open" per invoice, the latter naming its number.
    for inv in chunked.invoices.all():
        opened = AuditEntry.objects.get(
            action="invoice.open", content_type__model="invoice", object_id=str(inv.pk)
        )
        assert opened.object_repr == inv.number == opened.after["number"]


@pytest.mark.django_db
def test_a_chunk_queued_twice_bills_each_period_once_and_leaves_no_staged_rows():
    contracts = _contracts(4, started_on=D(2026, 1, 1))
    ids = [c.pk for c in contracts]
    first = services.bill_contracts(contract_ids=ids, today=D(2026, 1, 1))
    again = services.bill_contracts(contract_ids=ids, today=D(2026, 1, 1))
    assert len(first.invoice_ids) == 4 and again.invoice_ids == [] and not again.errors
    assert sorted(Invoice.objects.values_list("number", flat=True)) == [
        f"INV-2026-{n:06d}" for n in range(1, 5)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'billing_stage_%%' "
            "AND relpersistence = 't'"
        )
        stages = [row[0] for row in cursor.fetchall()]
        assert stages, "the chunk staged its invoices"
        for stage in stages:
            cursor.execute(f"SELECT count(*) FROM {stage}")
            assert cursor.fetchone() == (0,)


@pytest.mark.django_db
def test_the_staging_table_is_truncated_once_it_passes_its_size_limit(monkeypatch):
    """A temporary table is never vacuumed; past the limit the chunk truncates it first."""

    def stage_size() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT sum(pg_relation_size(oid)) FROM pg_class "
                "WHERE relname LIKE 'billing_stage_%%' AND relpersistence = 't'"
            )
            return cursor.fetchone()[0]

    contracts = _contracts(3, started_on=D(2026, 1, 1))
    ids = [c.pk for c in contracts]
    services.bill_contracts(contract_ids=ids, today=D(2026, 1, 1))
    one_page = stage_size()
    # What many chunks leave behind: pages of deleted rows.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE 'billing_stage_%%' "
            "AND relpersistence = 't'"
        )
        (stage,) = [row[0] for row in cursor.fetchall()]
        cursor.execute(
            f"INSERT INTO {stage} SELECT i.* FROM invoices_invoice i, generate_series(1, 300)"
        )
        cursor.execute(f"DELETE FROM {stage}")
    bloated = stage_size()
    assert bloated > 10 * one_page
    monkeypatch.setattr(services, "_STAGE_MAX_BYTES", 4 * one_page)
    services.bill_contracts(contract_ids=ids, today=D(2026, 2, 1))
    assert stage_size() == one_page
    services.bill_contracts(contract_ids=ids, today=D(2026, 3, 1))  # under the limit: kept
    assert stage_size() == one_page
    assert {c.invoices.count() for c in contracts} == {3}
