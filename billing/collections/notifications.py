"""Customer and staff e-mails of the billing calendar: each sent once, at least once.

Sending is claimed by writing the audit entry "notification.<kind>" on the invoice,
payment, refund or contract; a partial unique index (core migration) lets only one such
entry exist, so a task run twice, or by two workers at once, e-mails once. The claim and
the send share one transaction: if the mail server refuses, the claim is rolled back and
the next run (the task's retry, or the hourly send_reminders) tries again.

Across a crash this is at-least-once, on purpose. A worker that dies (or loses the
database) after the mail server accepted the message but before the claim committed has
sent a message nobody recorded; the next run sends it again. Every message therefore
carries a Message-ID made from its claim alone (kind, object, site), identical on every
try, so mail systems that de-duplicate by Message-ID (most do, and so do clients' threads)
show it once. The other choice, committing the claim as "sending" before sending, would
lose the message instead in the same crash, and a lost cancellation warning costs a
customer their addresses, while a duplicate receipt costs nothing. docs/operations.md.
"""

import logging
from collections.abc import Callable
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.mail import EmailMessage, EmailMultiAlternatives
from django.db import IntegrityError, models, transaction
from django.db.models import Exists, OuterRef
from django.db.models.functions import Cast
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _

from billing.invoices.links import pay_url
from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments.models import Payment, PaymentStatus, Refund, RefundStatus
from contracts.models import (
    PAYING_ROLES,
    CancellationReason,
    ContractStatus,
    Customer,
    LeaseContract,
)
from core import l10n
from core.audit import audit_record
from core.models import AuditEntry

from .models import InvoiceReport, ReportStatus
from .selectors import invoice_is_under_review, invoices_with_payment_processing

logger = logging.getLogger(__name__)

NOTIFIER = "notifications"

PAYMENT_FAILED = "payment_failed"
INVOICE_OVERDUE = "invoice_overdue"
CONTRACT_CANCELLED = "contract_cancelled"
RECEIPT = "receipt"
PAID_AFTER_CANCELLATION = "paid_after_cancellation"
REFUND_FAILED = "refund_failed"
REPORT_STAFF_ALERT = "report_staff_alert"
# The customer's e-mail for each step of a report, by the report's status.
REPORT_KINDS = {
    ReportStatus.OPEN: "report_received",
    ReportStatus.UNDER_REVIEW: "report_received",
    ReportStatus.REJECTED: "report_rejected",
    ReportStatus.CORRECTED: "report_corrected",
}


def cancellation_warning_kind(days: int) -> str:
    return f"cancellation_warning_{days}d"


def billing_contacts(customer: Customer) -> list[str]:
    """The customer's billing e-mail recipients plus every owner and billing member, once each."""
    emails = list(customer.billing_recipients)
    emails += customer.memberships.filter(role__in=PAYING_ROLES).values_list(
        "user__email", flat=True
    )
    seen: dict[str, str] = {}
    for email in emails:
        if email and email.lower() not in seen:
            seen[email.lower()] = email
    return list(seen.values())


def not_notified(queryset: models.QuerySet, kind: str) -> models.QuerySet:
    """Filter `queryset` to the objects that have not had the `kind` notification yet."""
    sent = AuditEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(queryset.model),
        object_id=Cast(OuterRef("pk"), models.CharField()),
        action=f"notification.{kind}",
    )
    return queryset.exclude(Exists(sent))


def notification_message_id(kind: str, target: models.Model) -> str:
    """The Message-ID of the `kind` e-mail about `target`: the same on every try (see above)."""
    domain = urlsplit(settings.SITE_URL).hostname or "localhost"
    label = target._meta.label_lower.replace(".", "-")
    return f"<notification.{kind}.{label}.{target.pk}@{domain}>"


def _mail_staff(subject: str, body: str, *, message_id: str) -> None:
    """mail_admins, with the claim's Message-ID (mail_admins takes no headers)."""
    if not settings.ADMINS:
        return
    EmailMessage(
        subject=f"{settings.EMAIL_SUBJECT_PREFIX}{subject}",
        body=body,
        from_email=settings.SERVER_EMAIL,
        to=[address for _name, address in settings.ADMINS],
        headers={"Message-ID": message_id},
    ).send()


def _language(customer: Customer) -> str:
    """Customers read their e-mails in their document language."""
    return l10n.portal_language(customer.document_language)


def _contract_context(contract: LeaseContract | None) -> dict:
    if contract is None:
        return {"contract": None, "blocks": []}
    return {
        "contract": contract,
        "blocks": [b.prefix for b in contract.blocks.order_by("first_address")],
    }


def _send_once(
    *,
    kind: str,
    target: models.Model,
    customer: Customer,
    subject: Callable[[], str],
    template: str,
    context: dict,
    language: str | None = None,
) -> bool:
    """Claim, render in the customer's language (or `language`) and send. `subject` is a
    callable so it is written in that language too."""
    with translation.override(language or _language(customer)):
        return _send_in_language(
            kind=kind,
            target=target,
            customer=customer,
            subject=subject(),
            template=template,
            context=context,
        )


def _send_in_language(
    *,
    kind: str,
    target: models.Model,
    customer: Customer,
    subject: str,
    template: str,
    context: dict,
) -> bool:
    recipients = billing_contacts(customer)
    if not recipients:
        logger.warning("no billing contact for %s; %s not sent", customer, kind)
        return False
    context = {"customer": customer, "site_url": settings.SITE_URL, **context}
    message_id = notification_message_id(kind, target)
    with transaction.atomic():
        try:
            with transaction.atomic():
                audit_record(
                    actor=NOTIFIER,
                    action=f"notification.{kind}",
                    target=target,
                    customer=customer,
                    after={"to": recipients, "subject": subject, "message_id": message_id},
                )
        except IntegrityError:
            return False
        message = EmailMultiAlternatives(
            subject=subject,
            body=render_to_string(f"emails/{template}.txt", context),
            to=recipients,
            headers={"Message-ID": message_id},
        )
        message.attach_alternative(
            render_to_string(f"emails/{template}.html", context), "text/html"
        )
        message.send()
    return True


def _invoice(invoice_id: int) -> Invoice | None:
    return Invoice.objects.select_related("customer", "contract").filter(pk=invoice_id).first()


def notify_payment_failed(*, payment_id: int) -> bool:
    """Tell the customer an automatic charge failed (or needs them, for 3-D Secure) and the
    invoice is still open, with the Pay online link."""
    payment = Payment.objects.select_related("invoice__customer", "invoice__contract").get(
        pk=payment_id
    )
    invoice = payment.invoice
    needs_customer = payment.status == PaymentStatus.REQUIRES_ACTION
    if not (payment.status == PaymentStatus.FAILED or needs_customer):
        return False
    if invoice.status != InvoiceStatus.OPEN:
        return False
    number = {"number": invoice.number}

    def subject() -> str:
        if needs_customer:
            return _("Please confirm the payment for invoice %(number)s") % number
        return _("Payment for invoice %(number)s failed") % number

    return _send_once(
        kind=PAYMENT_FAILED,
        target=payment,
        customer=invoice.customer,
        subject=subject,
        template="payment_failed",
        context={
            "invoice": invoice,
            "payment": payment,
            "pay_url": pay_url(invoice),
            # After a bank debit failed late this is the fresh grace window it gave.
            "cancellation_date": invoice.cancellation_date if invoice.contract_id else None,
            **_contract_context(invoice.contract),
        },
    )


def notify_invoice_overdue(*, invoice_id: int) -> bool:
    invoice = _invoice(invoice_id)
    if invoice is None or invoice.status != InvoiceStatus.OPEN:
        return False
    if invoice.contract and invoice.contract.status == ContractStatus.CANCELLED:
        return False
    if invoice_is_under_review(invoice.pk) or invoices_with_payment_processing([invoice.pk]):
        return False
    return _send_once(
        kind=INVOICE_OVERDUE,
        target=invoice,
        customer=invoice.customer,
        subject=lambda: _("Invoice %(number)s is overdue") % {"number": invoice.number},
        template="invoice_overdue",
        context={
            "invoice": invoice,
            "pay_url": pay_url(invoice),
            "cancellation_date": invoice.cancellation_date if invoice.contract_id else None,
            **_contract_context(invoice.contract),
        },
    )


def notify_cancellation_warning(*, invoice_id: int, days: int) -> bool:
    """ "Contract C-… and blocks … will be cancelled on <date>", with the Pay online link."""
    invoice = _invoice(invoice_id)
    if invoice is None or invoice.status != InvoiceStatus.OPEN or invoice.contract is None:
        return False
    if invoice.contract.status == ContractStatus.CANCELLED:
        return False
    if invoice_is_under_review(invoice.pk) or invoices_with_payment_processing([invoice.pk]):
        return False
    contract = invoice.contract
    cancellation_date = invoice.cancellation_date
    return _send_once(
        kind=cancellation_warning_kind(days),
        target=invoice,
        customer=invoice.customer,
        subject=lambda: (
            _(
                "Contract %(reference)s will be cancelled on %(day)s "
                "unless invoice %(number)s is paid"
            )
            % {
                "reference": contract.reference,
                "day": l10n.date(cancellation_date, length="long"),
                "number": invoice.number,
            }
        ),
        template="cancellation_warning",
        context={
            "invoice": invoice,
            "pay_url": pay_url(invoice),
            "cancellation_date": cancellation_date,
            "days": days,
            **_contract_context(contract),
        },
    )


def notify_contract_cancelled(*, contract_id: int) -> bool:
    contract = LeaseContract.objects.select_related("customer").get(pk=contract_id)
    if (
        contract.status != ContractStatus.CANCELLED
        or contract.cancellation_reason != CancellationReason.NON_PAYMENT
    ):
        return False
    unpaid = list(contract.invoices.filter(status=InvoiceStatus.OPEN).order_by("due_date", "pk"))
    return _send_once(
        kind=CONTRACT_CANCELLED,
        target=contract,
        customer=contract.customer,
        subject=lambda: (
            _("Contract %(reference)s has been cancelled for non-payment")
            % {"reference": contract.reference}
        ),
        template="contract_cancelled",
        context={"unpaid": unpaid, **_contract_context(contract)},
    )


def notify_invoice_paid(*, invoice_id: int) -> bool:
    """Send the receipt; if the contract had already been cancelled, alert staff too."""
    invoice = _invoice(invoice_id)
    if invoice is None or invoice.status != InvoiceStatus.PAID:
        return False
    _alert_staff_if_paid_after_cancellation(invoice)
    return _send_once(
        kind=RECEIPT,
        target=invoice,
        customer=invoice.customer,
        subject=lambda: _("Receipt for invoice %(number)s") % {"number": invoice.number},
        template="receipt",
        context={"invoice": invoice, **_contract_context(invoice.contract)},
    )


def _alert_staff_if_paid_after_cancellation(invoice: Invoice) -> None:
    contract = invoice.contract
    if contract is None or contract.status != ContractStatus.CANCELLED:
        return
    if invoice.paid_at and contract.cancelled_at and invoice.paid_at < contract.cancelled_at:
        return
    subject = (
        f"Invoice {invoice.number} was paid after {contract.reference} was cancelled "
        f"({contract.get_cancellation_reason_display()})"
    )
    with transaction.atomic():
        try:
            with transaction.atomic():
                audit_record(
                    actor=NOTIFIER,
                    action=f"notification.{PAID_AFTER_CANCELLATION}",
                    target=invoice,
                    customer=invoice.customer,
                    after={"contract": contract.reference, "paid_at": invoice.paid_at},
                    note="Staff alerted: decide whether to reinstate the contract or refund.",
                )
        except IntegrityError:
            return
        logger.warning(subject)
        _mail_staff(
            subject,
            f"{subject}.\n\nThe invoice is Paid and the contract stays cancelled; its blocks "
            "are deactivated. Reinstate the customer with a new contract or refund the "
            f"payment.\n\nCustomer: {invoice.customer} <{invoice.customer.email}>\n",
            message_id=notification_message_id(PAID_AFTER_CANCELLATION, invoice),
        )


def notify_staff_refund_failed(*, refund_id: int) -> bool:
    """Tell staff, once per refund, that the processor could not return the money."""
    refund = (
        Refund.objects.select_related("payment__invoice__customer").filter(pk=refund_id).first()
    )
    if refund is None or refund.status != RefundStatus.FAILED:
        return False
    payment = refund.payment
    invoice = payment.invoice
    subject = (
        f"Refund of {refund.amount} {payment.currency} for invoice {invoice.number} failed "
        f"({refund.failure_reason or 'no reason given'})"
    )
    with transaction.atomic():
        try:
            with transaction.atomic():
                audit_record(
                    actor=NOTIFIER,
                    action=f"notification.{REFUND_FAILED}",
                    target=refund,
                    customer=invoice.customer,
                    after={"failure_reason": refund.failure_reason, "payment": payment.pk},
                    note="Staff alerted: return the money another way or ask for other details.",
                )
        except IntegrityError:
            return False
        logger.error("STAFF: %s", subject)
        _mail_staff(
            subject,
            f"{subject}.\n\nThe payment processor could not return the money (refund "
            f"{refund.provider_refund_id or refund.pk}, payment {payment.pk}); it is back in "
            "our balance. The invoice shows what is still refunded. Refund again from the "
            "payment in the admin, or return the money another way.\n\n"
            f"Customer: {invoice.customer} <{invoice.customer.email}>\n",
            message_id=notification_message_id(REFUND_FAILED, refund),
        )
    return True


def notify_report(*, report_id: int) -> bool:
    """Tell the customer's billing contacts where their report stands (received, rejected
    with the new cancellation date, corrected), once per step; a new report also alerts staff.
    """
    report = (
        InvoiceReport.objects.select_related("invoice__customer", "invoice__contract")
        .filter(pk=report_id)
        .first()
    )
    if report is None:
        return False
    invoice = report.invoice
    if report.resolved_at is None:
        _alert_staff_of_report(report)
    kind = REPORT_KINDS[report.status]
    number = {"number": invoice.number}
    # Written inside _send_once's language override, so in the customer's document language.
    subjects = {
        "report_received": lambda: _("We are reviewing invoice %(number)s") % number,
        "report_rejected": lambda: (
            _("Your report on invoice %(number)s: the invoice stands") % number
        ),
        "report_corrected": lambda: _("Your report on invoice %(number)s: corrected") % number,
    }

    still_due = invoice.is_payable
    return _send_once(
        kind=kind,
        target=report,
        customer=invoice.customer,
        subject=subjects[kind],
        template=kind,
        context={
            "invoice": invoice,
            "report": report,
            "still_due": still_due,
            "pay_url": pay_url(invoice) if still_due else "",
            "cancellation_date": invoice.cancellation_date if invoice.contract_id else None,
            **_contract_context(invoice.contract),
        },
    )


def _alert_staff_of_report(report: InvoiceReport) -> None:
    invoice = report.invoice
    # Staff e-mails are English; the reason's label is lazy and would otherwise follow
    # whatever language the request that opened the report was in.
    with translation.override("en"):
        reason = str(report.get_reason_display())
    subject = f"Invoice {invoice.number} reported by {invoice.customer}: {reason}"
    with transaction.atomic():
        try:
            with transaction.atomic():
                audit_record(
                    actor=NOTIFIER,
                    action=f"notification.{REPORT_STAFF_ALERT}",
                    target=report,
                    customer=invoice.customer,
                    after={"invoice": invoice.number},
                )
        except IntegrityError:
            return
        _mail_staff(
            subject,
            f"{subject}.\n\n{report.description}\n\nExpected correction: "
            f"{report.expected_correction or '(none given)'}\n\nCollection of this invoice "
            "is paused until the report is rejected or corrected in the admin "
            "(Collections > Reported invoices).\n",
            message_id=notification_message_id(REPORT_STAFF_ALERT, report),
        )
