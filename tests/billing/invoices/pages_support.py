"""Invoices in every status for one customer, made through the services."""

import datetime
from decimal import Decimal

from billing.invoices import services as invoice_services
from billing.invoices.models import Invoice
from billing.payments import services
from billing.payments.models import PaymentKind
from tests.factories import make_contract, make_invoice


def pay(invoice: Invoice, *, brand: str = "visa", last4: str = "4242") -> Invoice:
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    services.payment_record_success(payment_id=payment.pk, actor="t", brand=brand, last4=last4)
    invoice.refresh_from_db()
    return invoice


def fail(invoice: Invoice, message: str = "Your card was declined.") -> None:
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor="t"
    )
    services.payment_record_failure(
        payment_id=payment.pk, actor="t", code="card_declined", message=message
    )


def invoice_on(customer, day: datetime.date, *, finalize: bool = True, **kw) -> Invoice:
    return make_invoice(make_contract(customer, started_on=day, **kw), finalize=finalize)


def every_status(customer) -> dict[str, Invoice]:
    """One invoice per status; issue dates spread over Jan-Jun 2026, due 14 days later."""
    d = datetime.date
    invoices = {
        "open": invoice_on(customer, d(2026, 6, 1), price="200.00"),
        "overdue": invoice_on(customer, d(2026, 5, 1), price="300.00", currency="USD"),
        "paid": pay(invoice_on(customer, d(2026, 4, 1), price="400.00")),
        "draft": invoice_on(customer, d(2026, 6, 10), finalize=False, price="50.00"),
        "void": invoice_on(customer, d(2026, 3, 1), price="500.00"),
        "refund": pay(invoice_on(customer, d(2026, 2, 1), price="600.00")),
        "uncollectible": invoice_on(customer, d(2026, 1, 1), price="700.00"),
    }
    invoice_services.invoice_void(invoice_id=invoices["void"].pk, actor="t")
    invoice_services.invoice_mark_uncollectible(invoice_id=invoices["uncollectible"].pk, actor="t")
    payment = invoices["refund"].payments.get()
    services.payment_record_refund(
        payment_id=payment.pk,
        amount=payment.amount,
        provider_refund_id="re_test_1",
        actor="t",
        reason="requested_by_customer",
    )
    for invoice in invoices.values():
        invoice.refresh_from_db()
    return invoices


TODAY = datetime.date(2026, 6, 5)
ZERO = Decimal("0.00")


SORT_COLUMNS = {"number": "number", "date": "issue_date", "due": "due_date", "amount": "total"}
SORT_COLUMNS["status"] = "status"


def expected_order(invoices, key: str, *, descending: bool) -> list[str]:
    """The list's order, worked out here from the fields (not with the app's own query):
    drafts without the value count as the newest, ties go by id in the same direction."""
    field = SORT_COLUMNS[key]
    present = [i for i in invoices if getattr(i, field) is not None]
    missing = [i for i in invoices if getattr(i, field) is None]
    present.sort(key=lambda i: (getattr(i, field), i.pk), reverse=descending)
    missing.sort(key=lambda i: i.pk, reverse=descending)
    ordered = missing + present if descending else present + missing
    return [i.ref for i in ordered]
