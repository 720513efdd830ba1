"""Statements of account: what a customer owed, bought, was credited, paid and got back.

For a period and one currency: the opening balance, every invoice, credit note, payment
and refund in the period with the running balance, the closing balance, and an aging
table of what is open. The balance is what the customer owes (negative: we owe them,
e.g. credit left by a credit note), so for any period

    closing = opening + invoices - credit notes - payments + refunds.

Built here because it reads payments and refunds (payments depend on invoices, never the
reverse); the customer pages, the API and the staff e-mail all use `statement_build`.

What counts:
- an invoice on its issue date, at its total less what was refunded of it without a
  credit note (a refund or lost dispute settles a Paid invoice: it is not owed again); a
  voided invoice only at what credit notes credited of it before it was voided (a plain
  void was never owed and is left out). Both read the invoice as it is now, so a later
  void or refund also changes the invoice's line in statements of earlier periods;
- a credit note on its issue date, at its total (whatever it settled: amount due, refund
  or credit balance);
- a payment when it succeeded, at what the provider took, including a duplicate or an
  excess (their refund follows as a refund); a payment held for staff counts toward
  nothing, and neither does its return;
- a refund when it succeeded;
- a staff adjustment of the customer's credit balance, when it was made (credit given
  lowers the balance). Credit applied to an invoice is not a line: that credit was already
  in the balance when the credit note or adjustment made it.

So, with adjustments (none in most histories) as a fifth term:
closing = opening + invoices - credit notes - payments + refunds - credit adjustments.
"""

import csv
import datetime
import io
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Case, DecimalField, F, QuerySet, Sum, When
from django.db.models.functions import Coalesce
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, gettext_noop, pgettext_lazy

from billing.invoices.documents.pdf import grouped_iban, html_to_pdf
from billing.invoices.models import (
    PAYABLE_STATUSES,
    BalanceTransactionKind,
    CreditNote,
    CustomerBalance,
    CustomerBalanceTransaction,
    Invoice,
    InvoiceStatus,
)
from contracts.models import PAYING_ROLES, Customer
from core import l10n
from core.audit import Actor, audit_record
from core.errors import DomainError
from core.money import ZERO, normalize_currency

from .models import Payment, PaymentStatus, Refund, RefundStatus

INVOICE, CREDIT_NOTE, PAYMENT, REFUND = "invoice", "credit_note", "payment", "refund"
ADJUSTMENT = "adjustment"
_ORDER = {INVOICE: 0, CREDIT_NOTE: 1, PAYMENT: 2, REFUND: 3, ADJUSTMENT: 4}
# Lazy: a label is read in the language active where it is shown (a page, the PDF in the
# customer's document language).
KIND_LABELS = {
    INVOICE: pgettext_lazy("statement line", "Invoice"),
    CREDIT_NOTE: pgettext_lazy("statement line", "Credit note"),
    PAYMENT: pgettext_lazy("statement line", "Payment"),
    REFUND: pgettext_lazy("statement line", "Refund"),
    ADJUSTMENT: pgettext_lazy("statement line", "Credit adjustment"),
}
AGING_BUCKETS = (
    ("current", gettext_lazy("Current")),
    ("1_30", gettext_lazy("1-30 days")),
    ("31_60", gettext_lazy("31-60 days")),
    ("61_90", gettext_lazy("61-90 days")),
    ("over_90", gettext_lazy("Over 90 days")),
)
# A line's description is kept as parts (a message and its values) and written out when it
# is read, so one statement reads in English on a page and in German in a German PDF.
_Part = tuple[str, dict | None]  # (msgid, values); values None: text shown as it is
# How a payment without a card came in (PaymentKind's labels), for the catalogue.
PAYMENT_KIND_NAMES = (
    gettext_noop("Pay online"),
    gettext_noop("Automatic charge"),
    gettext_noop("API"),
    gettext_noop("Recorded by staff"),
)
MAX_PERIOD_DAYS = 3 * 366


def _written(part: _Part) -> str:
    text, values = part
    if values is None:
        return text
    return _(text) % {key: _shown(value) for key, value in values.items()}


def _shown(value) -> str:
    """A value in the active language: a date, an amount, a (start, end) period, or a part."""
    if isinstance(value, datetime.date):
        return l10n.date(value)
    if isinstance(value, Decimal):
        return l10n.amount(value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], datetime.date):
        return l10n.period(*value)
    if isinstance(value, tuple):
        return _written(value)
    return str(value)


@dataclass(frozen=True)
class StatementLine:
    date: datetime.date
    kind: str
    reference: str
    parts: tuple[_Part, ...]
    amount: Decimal  # + raises what the customer owes, - lowers it
    balance: Decimal
    url: str = ""
    sort_id: int = 0

    @property
    def kind_label(self) -> str:
        return str(KIND_LABELS[self.kind])

    @property
    def description(self) -> str:
        """The parts in the active language, dates and amounts as it writes them."""
        return "; ".join(_written(part) for part in self.parts)

    @property
    def debit(self) -> Decimal | None:
        return self.amount if self.amount > 0 else None

    @property
    def credit(self) -> Decimal | None:
        return -self.amount if self.amount < 0 else None


@dataclass
class Statement:
    customer: Customer
    currency: str
    start: datetime.date
    end: datetime.date
    as_of: datetime.date
    opening: Decimal
    lines: list[StatementLine]
    closing: Decimal
    totals: dict[str, Decimal]
    aging: list[tuple[str, str, Decimal]]
    open_invoices: list[Invoice] = field(default_factory=list)
    credit_balance: Decimal = ZERO

    @property
    def aging_total(self) -> Decimal:
        return sum((amount for _key, _label, amount in self.aging), ZERO)


def statement_period(
    *, start: datetime.date | None, end: datetime.date | None, today: datetime.date
) -> tuple[datetime.date, datetime.date]:
    """The period asked for, checked: it may not end before it starts, nor span years."""
    end = end or today
    start = start or end.replace(month=1, day=1)
    if end < start:
        raise DomainError(
            _(
                "The period ends (%(end)s) before it starts (%(start)s); "
                "choose an end date on or after the start date."
            )
            % {"end": l10n.date(end), "start": l10n.date(start)},
            code="period",
        )
    if (end - start).days > MAX_PERIOD_DAYS:
        raise DomainError(
            _("A statement covers at most three years; choose a shorter period."), code="period"
        )
    return start, end


def statement_currencies(customer: Customer) -> list[str]:
    """The currencies the customer was ever invoiced in (the statement's choices)."""
    used = (
        Invoice.objects.filter(customer=customer)
        .exclude(status=InvoiceStatus.DRAFT)
        .order_by()
        .values_list("currency", flat=True)
        .distinct()
    )
    return sorted(set(used)) or [settings.SUPPORTED_CURRENCIES[0]]


def _bounds(day: datetime.date) -> datetime.datetime:
    """Midnight at the start of `day`, local time: payments are dated in the portal's zone."""
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def _invoices(customer: Customer, currency: str) -> QuerySet[Invoice]:
    return (
        Invoice.objects.filter(customer=customer, currency=currency)
        .exclude(status=InvoiceStatus.DRAFT)
        .exclude(status=InvoiceStatus.VOID, pre_payment_credit_notes_amount=0)
        .annotate(
            owed=Case(
                When(status=InvoiceStatus.VOID, then=F("pre_payment_credit_notes_amount")),
                default=F("total") - F("amount_refunded"),
                output_field=DecimalField(),
            )
        )
    )


def _credit_notes(customer: Customer, currency: str) -> QuerySet[CreditNote]:
    return CreditNote.objects.filter(customer=customer, currency=currency)


def _payments(customer: Customer, currency: str) -> QuerySet[Payment]:
    return Payment.objects.filter(
        invoice__customer=customer,
        invoice__currency=currency,
        status__in=[PaymentStatus.SUCCEEDED, PaymentStatus.REFUNDED],
        held_reason="",
        succeeded_at__isnull=False,
    ).annotate(collected=Coalesce("amount_received", "amount"))


def _refunds(customer: Customer, currency: str) -> QuerySet[Refund]:
    return Refund.objects.filter(
        payment__invoice__customer=customer,
        payment__invoice__currency=currency,
        payment__held_reason="",
        status=RefundStatus.SUCCEEDED,
        succeeded_at__isnull=False,
    )


def _adjustments(customer: Customer, currency: str) -> QuerySet[CustomerBalanceTransaction]:
    return CustomerBalanceTransaction.objects.filter(
        balance__customer=customer,
        balance__currency=currency,
        kind=BalanceTransactionKind.ADJUSTMENT,
    )


def _sum(qs: QuerySet, column: str) -> Decimal:
    return qs.aggregate(s=Sum(column))["s"] or ZERO


def statement_build(
    *,
    customer: Customer,
    currency: str,
    start: datetime.date,
    end: datetime.date,
    today: datetime.date | None = None,
) -> Statement:
    """The statement of `customer` in `currency` for start..end (both inclusive).

    A fixed number of queries whatever the number of lines. The aging table is of what is
    open now (amount remaining), by days past due on the statement's end date (or today,
    when the period ends in the future).
    """
    currency = normalize_currency(currency)
    today = today or timezone.localdate()
    start, end = statement_period(start=start, end=end, today=today)
    lo, hi = _bounds(start), _bounds(end + datetime.timedelta(days=1))
    invoices = _invoices(customer, currency)
    notes = _credit_notes(customer, currency)
    payments = _payments(customer, currency)
    refunds = _refunds(customer, currency)
    adjustments = _adjustments(customer, currency)
    opening = (
        _sum(invoices.filter(issue_date__lt=start), "owed")
        - _sum(notes.filter(issue_date__lt=start), "total")
        - _sum(payments.filter(succeeded_at__lt=lo), "collected")
        + _sum(refunds.filter(succeeded_at__lt=lo), "amount")
        - _sum(adjustments.filter(created_at__lt=lo), "amount")
    )
    raw: list[StatementLine] = []
    for inv in invoices.filter(issue_date__gte=start, issue_date__lte=end):
        parts: list[_Part] = [
            (
                gettext_noop("Period %(period)s"),
                {"period": (inv.period_start, inv.period_end)},
            )
        ]
        if inv.status == InvoiceStatus.VOID:
            parts.append(
                (
                    gettext_noop("void, %(owed)s of %(total)s credited before"),
                    {"owed": inv.owed, "total": inv.total},
                )
            )
        elif inv.amount_refunded:
            parts.append(
                (
                    gettext_noop("total %(total)s, %(refunded)s refunded and not owed"),
                    {"total": inv.total, "refunded": inv.amount_refunded},
                )
            )
        if inv.applied_balance:
            parts.append(
                (gettext_noop("%(amount)s paid from your credit"), {"amount": inv.applied_balance})
            )
        raw.append(
            StatementLine(
                inv.issue_date,
                INVOICE,
                inv.number,
                tuple(parts),
                inv.owed,
                ZERO,
                reverse("invoices:invoice-detail", args=[inv.number]),
                inv.pk,
            )
        )
    for cn in notes.filter(issue_date__gte=start, issue_date__lte=end).select_related("invoice"):
        raw.append(
            StatementLine(
                cn.issue_date,
                CREDIT_NOTE,
                cn.number,
                (
                    (
                        gettext_noop("Credits %(number)s: %(reason)s"),
                        {"number": cn.invoice.number, "reason": cn.reason},
                    ),
                ),
                -cn.total,
                ZERO,
                reverse("invoices:credit-note-detail", args=[cn.number]),
                cn.pk,
            )
        )
    for pay in payments.filter(succeeded_at__gte=lo, succeeded_at__lt=hi).select_related("invoice"):
        method: _Part = (
            (f"{pay.method_brand.capitalize()} •••• {pay.method_last4}", None)
            if pay.method_brand
            else (str(pay.get_kind_display()), {})
        )
        raw.append(
            StatementLine(
                timezone.localdate(pay.succeeded_at),
                PAYMENT,
                pay.invoice.number,
                (method, (gettext_noop("duplicate, returned"), {}))
                if pay.is_duplicate
                else (method,),
                -pay.collected,
                ZERO,
                reverse("invoices:invoice-detail", args=[pay.invoice.number]),
                pay.pk,
            )
        )
    for ref in refunds.filter(succeeded_at__gte=lo, succeeded_at__lt=hi).select_related(
        "payment__invoice", "credit_note"
    ):
        why: _Part | None = (
            (gettext_noop("for credit note %(number)s"), {"number": ref.credit_note.number})
            if ref.credit_note_id
            else (ref.reason, None)
            if ref.reason
            else None
        )
        parts = [
            (gettext_noop("Refund to your payment method (%(why)s)"), {"why": why})
            if why
            else (gettext_noop("Refund to your payment method"), {})
        ]
        raw.append(
            StatementLine(
                timezone.localdate(ref.succeeded_at),
                REFUND,
                ref.payment.invoice.number,
                tuple(parts),
                ref.amount,
                ZERO,
                reverse("invoices:invoice-detail", args=[ref.payment.invoice.number]),
                ref.pk,
            )
        )
    for adj in adjustments.filter(created_at__gte=lo, created_at__lt=hi):
        raw.append(
            StatementLine(
                timezone.localdate(adj.created_at),
                ADJUSTMENT,
                "",
                (
                    (
                        gettext_noop("Credit balance added: %(note)s")
                        if adj.amount > 0
                        else gettext_noop("Credit balance taken away: %(note)s"),
                        {"note": adj.note},
                    ),
                ),
                -adj.amount,
                ZERO,
                "",
                adj.pk,
            )
        )
    raw.sort(key=lambda line: (line.date, _ORDER[line.kind], line.sort_id))
    balance = opening
    lines = []
    totals = dict.fromkeys(_ORDER, ZERO)
    for line in raw:
        balance += line.amount
        totals[line.kind] += abs(line.amount)
        lines.append(
            StatementLine(
                line.date,
                line.kind,
                line.reference,
                line.parts,
                line.amount,
                balance,
                line.url,
                line.sort_id,
            )
        )
    as_of = min(end, today)
    open_invoices = [
        inv
        for inv in Invoice.objects.filter(
            customer=customer,
            currency=currency,
            status__in=PAYABLE_STATUSES,
            issue_date__lte=end,
        ).order_by("due_date", "id")
        if inv.amount_remaining > 0
    ]
    buckets = dict.fromkeys((key for key, _label in AGING_BUCKETS), ZERO)
    for inv in open_invoices:
        days = (as_of - inv.due_date).days
        key = (
            "current"
            if days <= 0
            else "1_30"
            if days <= 30
            else "31_60"
            if days <= 60
            else "61_90"
            if days <= 90
            else "over_90"
        )
        buckets[key] += inv.amount_remaining
    credit = (
        CustomerBalance.objects.filter(customer=customer, currency=currency)
        .values_list("amount", flat=True)
        .first()
    )
    return Statement(
        customer=customer,
        currency=currency,
        start=start,
        end=end,
        as_of=as_of,
        opening=opening,
        lines=lines,
        closing=balance,
        totals=totals,
        aging=[(key, label, buckets[key]) for key, label in AGING_BUCKETS],
        open_invoices=open_invoices,
        credit_balance=credit or ZERO,
    )


# --- Documents ------------------------------------------------------------------------

CSV_HEADER = ["date", "type", "reference", "description", "amount", "balance", "currency"]


def _csv_safe(text: str) -> str:
    """Reasons are typed by people: never let one become a spreadsheet formula."""
    return f"'{text}" if text and text[0] in "=+-@\t\r" else text


def statement_csv(statement: Statement) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    cur = statement.currency
    writer.writerow([statement.start, "opening_balance", "", "", "", statement.opening, cur])
    for line in statement.lines:
        writer.writerow(
            [
                line.date,
                line.kind,
                line.reference,
                _csv_safe(line.description),
                line.amount,
                line.balance,
                cur,
            ]
        )
    writer.writerow([statement.end, "closing_balance", "", "", "", statement.closing, cur])
    return out.getvalue()


def statement_filename(statement: Statement, ext: str) -> str:
    return (
        f"statement-{statement.currency}-{statement.start:%Y-%m-%d}-{statement.end:%Y-%m-%d}.{ext}"
    )


def statement_language(customer: Customer) -> str:
    """Statements are documents: in the customer's document language, like invoices."""
    return l10n.portal_language(customer.document_language)


def statement_pdf(statement: Statement) -> bytes:
    language = statement_language(statement.customer)
    with translation.override(language):
        customer = statement.customer
        html = render_to_string(
            "billing/pdf/statement.html",
            {
                "language": language,
                "s": statement,
                "seller": settings.SELLER,
                "iban": grouped_iban(settings.SELLER["iban"]),
                "customer": customer,
                "address_lines": [
                    p
                    for p in (
                        customer.address_line1,
                        customer.address_line2,
                        " ".join(x for x in (customer.postal_code, customer.city) if x),
                        customer.state,
                    )
                    if p
                ],
                "page_label": _("Page"),
                "of_label": _("of"),
            },
        )
    return html_to_pdf(html, variant="pdf/a-3b")


# --- E-mail (staff, from admin) -----------------------------------------------------


def _billing_contacts(customer: Customer) -> list[str]:
    """The customer's billing e-mail and every owner and billing member, once each."""
    emails = [
        customer.email,
        *customer.memberships.filter(role__in=PAYING_ROLES).values_list("user__email", flat=True),
    ]
    seen: dict[str, str] = {}
    for email in emails:
        if email and email.lower() not in seen:
            seen[email.lower()] = email
    return list(seen.values())


def statement_email(
    *,
    customer_id: int,
    currency: str,
    start: datetime.date,
    end: datetime.date,
    actor: Actor,
) -> list[str]:
    """E-mail the statement (PDF and CSV attached) to the customer's billing contacts.

    Bad input (a period that ends before it starts, an unknown currency) raises DomainError
    before anything is sent. Not idempotent by nature: each call is a mail staff asked for,
    and each leaves an audit entry on the customer. Returns the recipients.
    """
    customer = Customer.objects.get(pk=customer_id)
    statement = statement_build(customer=customer, currency=currency, start=start, end=end)
    recipients = _billing_contacts(customer)
    if not recipients:
        raise DomainError(f"{customer} has no billing e-mail address.", code="no_recipient")
    context = {"s": statement, "customer": customer, "site_url": settings.SITE_URL}
    # The e-mail is in the language of the PDF it carries (statement_pdf's override), not
    # in the language of the staff member who sent it from admin.
    with translation.override(statement_language(customer)):
        subject = _("Statement of account %(currency)s, %(start)s to %(end)s") % {
            "currency": statement.currency,
            "start": l10n.date(statement.start),
            "end": l10n.date(statement.end),
        }
        body = render_to_string("emails/statement.txt", context)
    message = EmailMultiAlternatives(subject=subject, body=body, to=recipients)
    message.attach(
        statement_filename(statement, "pdf"), statement_pdf(statement), "application/pdf"
    )
    message.attach(statement_filename(statement, "csv"), statement_csv(statement), "text/csv")
    message.send()
    audit_record(
        actor=actor,
        action="statement.emailed",
        target=customer,
        customer=customer,
        after={
            "currency": statement.currency,
            "start": statement.start,
            "end": statement.end,
            "closing": statement.closing,
            "to": recipients,
        },
    )
    return recipients
