import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing.invoices import services
from billing.invoices.models import INVOICE_TRANSITIONS, Invoice, InvoiceStatus, TaxRate
from billing.invoices.tax import OUTSIDE_EU_NOTE, REVERSE_CHARGE_NOTE, tax_breakdown, tax_for
from billing.payments import services as payment_services
from core.errors import DomainError, InvalidTransition
from core.models import AuditEntry
from core.money import quantize, to_minor_units
from tests.factories import CustomerFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db
D = datetime.date


def test_finalize_sets_number_dates_taxes_and_snapshot(settings, customer):
    settings.PAYMENT_TERMS_DAYS = 14
    invoice = make_invoice(customer=customer, blocks=2, price="123.45", started_on=D(2026, 3, 1))
    assert invoice.status == InvoiceStatus.OPEN
    assert invoice.number == "INV-2026-000001"
    assert (invoice.issue_date, invoice.due_date) == (D(2026, 3, 1), D(2026, 3, 15))
    assert invoice.subtotal == Decimal("246.90")
    assert invoice.tax == Decimal("46.91"), "19 % of 246.90 = 46.911, half-up"
    assert invoice.total == Decimal("293.81")
    assert invoice.bill_to_name == customer.name
    assert "Berlin" in invoice.bill_to_address
    tax_line = invoice.tax_lines.get()
    assert (tax_line.name, tax_line.rate, tax_line.taxable_amount) == (
        "VAT",
        Decimal("19.00"),
        Decimal("246.90"),
    )
    assert AuditEntry.objects.filter(action="invoice.open", object_id=str(invoice.pk)).exists()


def test_numbers_are_gapless_per_year_and_restart_each_year(customer):
    contract = make_contract(customer, started_on=D(2025, 11, 1))
    for day in (D(2025, 11, 1), D(2025, 12, 1), D(2026, 1, 1), D(2026, 2, 1)):
        services.billing_run(today=day)
    numbers = list(contract.invoices.order_by("period_start").values_list("number", flat=True))
    assert numbers == ["INV-2025-000001", "INV-2025-000002", "INV-2026-000001", "INV-2026-000002"]


def test_a_failed_finalisation_does_not_burn_a_number(customer):
    draft = make_invoice(customer=customer, finalize=False)
    TaxRate.objects.filter(country="DE").delete()
    with pytest.raises(DomainError, match="No tax rate"):
        services.invoice_finalize(invoice_id=draft.pk, actor="t", today=D(2026, 1, 5))
    TaxRate.objects.create(country="DE", name="VAT", rate=Decimal("19"))
    done = services.invoice_finalize(invoice_id=draft.pk, actor="t", today=D(2026, 1, 5))
    assert done.number == "INV-2026-000001"


def test_finalising_twice_is_refused_with_a_clear_message(customer):
    invoice = make_invoice(customer=customer)
    with pytest.raises(
        InvalidTransition, match=f"Invoice {invoice.number} is open and cannot become open"
    ):
        services.invoice_finalize(invoice_id=invoice.pk, actor="t")
    invoice.refresh_from_db()
    assert invoice.state_version == 2


def test_empty_draft_cannot_be_finalised(customer):
    draft = make_invoice(customer=customer, finalize=False)
    draft.lines.all().delete()
    with pytest.raises(DomainError, match="has no lines"):
        services.invoice_finalize(invoice_id=draft.pk, actor="t")
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.DRAFT and draft.number is None


@pytest.mark.parametrize(
    ("country", "tax_id", "name", "rate", "note"),
    [
        ("DE", "", "VAT", "19.00", ""),
        ("DE", "DE136695976", "VAT", "19.00", ""),  # domestic B2B is taxed
        ("PL", "PL8567346215", "VAT", "0", REVERSE_CHARGE_NOTE),
        ("FR", "", "VAT", "20.00", ""),  # EU consumer: the customer's rate
        ("IN", "27AAPFU0939F1ZV", "IGST", "18.00", ""),
        ("US", "", "VAT", "0", OUTSIDE_EU_NOTE),
        ("CH", "CHE-123.456.789", "VAT", "0", OUTSIDE_EU_NOTE),
    ],
)
def test_tax_rules(country, tax_id, name, rate, note):
    decision = tax_for(country=country, tax_id=tax_id, on=D(2026, 6, 1))
    assert (decision.name, decision.rate, decision.note) == (name, Decimal(rate), note)


def test_newest_rate_not_after_the_issue_date_applies():
    TaxRate.objects.create(country="DE", name="VAT", rate=Decimal("21"), valid_from=D(2027, 1, 1))
    assert tax_for(country="DE", tax_id="", on=D(2026, 12, 31)).rate == Decimal("19.00")
    assert tax_for(country="DE", tax_id="", on=D(2027, 1, 1)).rate == Decimal("21.00")


def test_reverse_charge_invoice_carries_the_note():
    pl = CustomerFactory(country="PL", tax_id="PL8567346215", city="Łódź")
    invoice = make_invoice(customer=pl, price="500")
    assert (invoice.tax, invoice.total) == (Decimal("0.00"), Decimal("500.00"))
    assert invoice.tax_note == REVERSE_CHARGE_NOTE


def test_rounding_is_half_up_once_per_rate_group():
    # Per-line rounding would give 3 x 0.19 = 0.57; per group it is 0.5985 -> 0.60.
    lines = [(Decimal("1.05"), Decimal("19"))] * 3
    (group,) = tax_breakdown(lines, tax_for(country="DE", tax_id="", on=D(2026, 1, 1)))
    assert (group.taxable_amount, group.amount) == (Decimal("3.15"), Decimal("0.60"))
    assert quantize(Decimal("0.005")) == Decimal("0.01")
    assert quantize(Decimal("2.675")) == Decimal("2.68")
    assert to_minor_units(Decimal("293.81")) == 29381


def test_zero_total_invoice_is_settled_on_finalisation(customer):
    invoice = make_invoice(customer=customer, price="0")
    assert invoice.status == InvoiceStatus.PAID
    assert invoice.paid_out_of_band


# Every (from, to) pair of invoice statuses, allowed or not, against the one table.
ALL_PAIRS = [(a, b) for a in InvoiceStatus for b in InvoiceStatus if a != b]


@pytest.mark.parametrize(("start", "target"), ALL_PAIRS)
def test_invoice_transition_table(customer, start, target):
    invoice = make_invoice(customer=customer)
    Invoice.objects.filter(pk=invoice.pk).update(status=start)
    invoice.refresh_from_db()
    if target in INVOICE_TRANSITIONS[start]:
        services.set_invoice_status(invoice, target, actor="t")
        invoice.refresh_from_db()
        assert invoice.status == target
    else:
        with pytest.raises(InvalidTransition):
            services.set_invoice_status(invoice, target, actor="t")
        invoice.refresh_from_db()
        assert invoice.status == start


def test_void_and_uncollectible_services(customer):
    first = make_invoice(customer=customer)
    services.invoice_void(invoice_id=first.pk, actor="t", reason="typo")
    services.invoice_void(invoice_id=first.pk, actor="t")  # quiet when already void
    first.refresh_from_db()
    assert first.status == InvoiceStatus.VOID and first.voided_at
    assert AuditEntry.objects.filter(action="invoice.void", object_id=str(first.pk)).count() == 1

    second = make_invoice(customer=customer)
    services.invoice_mark_uncollectible(invoice_id=second.pk, actor="t")
    second.refresh_from_db()
    assert second.status == InvoiceStatus.UNCOLLECTIBLE and second.marked_uncollectible_at


def test_a_paid_invoice_cannot_be_voided(customer):
    invoice = make_invoice(customer=customer)
    payment_services.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="t")
    with pytest.raises(DomainError, match="refund them instead of voiding"):
        services.invoice_void(invoice_id=invoice.pk, actor="t")
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID and invoice.paid_out_of_band


@pytest.mark.parametrize(
    "change",
    [
        {"total": Decimal("-1"), "subtotal": Decimal("-1")},
        {"tax": Decimal("1")},  # total != subtotal + tax
        {"amount_paid": Decimal("100000")},
        {"amount_refunded": Decimal("1")},  # more than was paid
        {"status": InvoiceStatus.OPEN, "number": None},
    ],
)
def test_database_constraints_refuse_impossible_invoices(customer, change):
    invoice = make_invoice(customer=customer)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=invoice.pk).update(**change)


def test_database_refuses_duplicate_numbers(customer):
    a = make_invoice(customer=customer)
    b = make_invoice(customer=customer)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.filter(pk=b.pk).update(number=a.number)


@pytest.mark.parametrize("service", ["invoice_void", "invoice_mark_uncollectible"])
def test_settling_the_only_overdue_invoice_otherwise_restores_the_contract(customer, service):
    from contracts.models import ContractStatus
    from contracts.services import contract_mark_past_due

    invoice = make_invoice(customer=customer, started_on=D(2026, 1, 1))
    contract_mark_past_due(contract_id=invoice.contract_id, actor="t")
    getattr(services, service)(invoice_id=invoice.pk, actor="t")
    invoice.contract.refresh_from_db()
    assert invoice.contract.status == ContractStatus.ACTIVE
