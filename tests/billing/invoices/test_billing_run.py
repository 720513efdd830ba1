import datetime
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction

from billing.invoices import services
from billing.invoices.models import BillingReason, Invoice, InvoiceLine, InvoiceStatus
from contracts.models import CancellationReason
from contracts.services import contract_cancel
from tests.factories import make_contract

pytestmark = pytest.mark.django_db
D = datetime.date


def test_run_issues_one_invoice_per_started_period_and_is_idempotent(customer):
    contract = make_contract(customer, blocks=2, price="100", started_on=D(2026, 1, 10))
    first = services.billing_run(today=D(2026, 3, 15))
    again = services.billing_run(today=D(2026, 3, 15))
    assert len(first.invoice_ids) == 3, "Jan, Feb and Mar periods (catch-up)"
    assert again.invoice_ids == []
    periods = list(
        contract.invoices.order_by("period_start").values_list("period_start", "period_end")
    )
    assert periods == [
        (D(2026, 1, 10), D(2026, 2, 9)),
        (D(2026, 2, 10), D(2026, 3, 9)),
        (D(2026, 3, 10), D(2026, 4, 9)),
    ]
    contract.refresh_from_db()
    assert contract.next_billing_date == D(2026, 4, 10)
    assert contract.invoices.filter(status=InvoiceStatus.OPEN).count() == 3
    first_invoice = contract.invoices.order_by("period_start").first()
    assert first_invoice.billing_reason == BillingReason.SUBSCRIPTION_CREATE
    assert first_invoice.lines.count() == 2


def test_run_skips_contracts_not_yet_due_and_cancelled_ones(customer):
    later = make_contract(customer, started_on=D(2026, 5, 1))
    gone = make_contract(customer, started_on=D(2026, 1, 1))
    contract_cancel(contract_id=gone.pk, reason=CancellationReason.STAFF, actor="t")
    assert services.billing_run(today=D(2026, 4, 30)).invoice_ids == []
    assert not Invoice.objects.filter(contract__in=[later, gone]).exists()


def test_short_first_period_is_prorated_by_days(customer):
    contract = make_contract(customer, price="310.00", started_on=D(2026, 1, 20), anchor=1)
    (invoice,) = services.contract_bill_due_periods(contract_id=contract.pk, today=D(2026, 1, 20))
    line = invoice.lines.get()
    assert (invoice.period_start, invoice.period_end) == (D(2026, 1, 20), D(2026, 1, 31))
    assert line.unit_price == Decimal("120.00"), "310 * 12/31"
    assert "prorated 12/31 days" in line.description
    contract.refresh_from_db()
    assert contract.next_billing_date == D(2026, 2, 1)


def test_database_refuses_a_second_live_invoice_for_a_period(customer):
    contract = make_contract(customer)
    services.contract_bill_due_periods(contract_id=contract.pk, today=contract.started_on)
    with pytest.raises(IntegrityError), transaction.atomic():
        Invoice.objects.create(
            customer=customer,
            contract=contract,
            currency="EUR",
            period_start=contract.started_on,
            period_end=contract.started_on,
        )


def test_a_contract_that_cannot_be_billed_is_reported_and_others_still_are(customer):
    from contracts.models import Customer

    nowhere = Customer.objects.create(
        name="No Rate", email="x@example.com", country="FR", tax_id=""
    )
    bad = make_contract(nowhere, started_on=D(2026, 1, 1))
    from billing.invoices.models import TaxRate

    TaxRate.objects.filter(country="FR").delete()
    good = make_contract(customer, started_on=D(2026, 1, 1))
    result = services.billing_run(today=D(2026, 1, 1))
    assert "No tax rate is configured for FR" in result.errors[bad.pk]
    assert good.invoices.count() == 1
    assert not bad.invoices.exists()
    bad.refresh_from_db()
    assert bad.next_billing_date == D(2026, 1, 1), "retried by the next run"
    assert not InvoiceLine.objects.filter(invoice__contract=bad).exists()
