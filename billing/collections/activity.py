"""E-mails customers were sent and problems they reported, as their activity shows them
(see core.activity).

The subject is what the customer read in their inbox; the entry's note (staff's) is not
shown. Staff alerts (paid after cancellation, failed refunds) are not registered: they
went to staff, not to the customer.
"""

from core.activity import actor_phrase, customer_action

from .models import ReportReason
from .notifications import (
    CONTRACT_CANCELLED,
    INVOICE_OVERDUE,
    PAYMENT_FAILED,
    RECEIPT,
    REPORT_KINDS,
)


def _email(entry, loaded) -> str:
    to = ", ".join(entry.after.get("to") or [])
    subject = entry.after.get("subject") or "a message"
    return f"E-mail “{subject}” sent to {to}" if to else f"E-mail “{subject}” sent"


for _kind in (PAYMENT_FAILED, INVOICE_OVERDUE, CONTRACT_CANCELLED, RECEIPT, *REPORT_KINDS.values()):
    customer_action(f"notification.{_kind}", kind="emails")(_email)
# One action per warning (e.g. 7 and 3 days before): every one of them.
customer_action("notification.cancellation_warning_", kind="emails", prefix=True)(_email)


# Reports of a problem with an invoice: what the customer did and what we decided. The
# description (the customer's) and the staff message are notes: the e-mails carry them.
def _reason(entry) -> str:
    reason = entry.after.get("reason") or ""
    return ReportReason(reason).label if reason in ReportReason.values else ""


@customer_action("invoice_report.opened", kind="invoices")
def _reported(entry, loaded) -> str:
    reason = _reason(entry)
    return (
        f"Problem with invoice {entry.after.get('invoice', '')} reported{actor_phrase(entry)}"
        + (f": {reason.lower()}" if reason else "")
    )


@customer_action("invoice_report.rejected", kind="invoices")
def _rejected(entry, loaded) -> str:
    return (
        f"Report on invoice {entry.after.get('invoice', '')} answered: the invoice stands "
        "(our e-mail says why)"
    )


@customer_action("invoice_report.corrected", kind="invoices")
def _corrected(entry, loaded) -> str:
    return f"Report on invoice {entry.after.get('invoice', '')} answered: the invoice is corrected"
