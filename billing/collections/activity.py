"""The e-mails customers were sent, as their activity shows them (see core.activity).

The subject is what the customer read in their inbox; the entry's note (staff's) is not
shown. Staff alerts (paid after cancellation, failed refunds) are not registered: they
went to staff, not to the customer.
"""

from core.activity import customer_action

from .notifications import (
    CONTRACT_CANCELLED,
    INVOICE_OVERDUE,
    PAYMENT_FAILED,
    RECEIPT,
)


def _email(entry, loaded) -> str:
    to = ", ".join(entry.after.get("to") or [])
    subject = entry.after.get("subject") or "a message"
    return f"E-mail “{subject}” sent to {to}" if to else f"E-mail “{subject}” sent"


for _kind in (PAYMENT_FAILED, INVOICE_OVERDUE, CONTRACT_CANCELLED, RECEIPT):
    customer_action(f"notification.{_kind}", kind="emails")(_email)
# One action per warning (e.g. 7 and 3 days before): every one of them.
customer_action("notification.cancellation_warning_", kind="emails", prefix=True)(_email)
