"""E-mails customers were sent and problems they reported, as their activity shows them
(see core.activity).

The subject is what the customer read in their inbox; the entry's note (staff's) is not
shown. Staff alerts (paid after cancellation, failed refunds) are not registered: they
went to staff, not to the customer.
"""

from django.utils.translation import get_language, gettext_noop
from django.utils.translation import gettext as _

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
    # The subject as the customer read it in their inbox (in the document language).
    subject = entry.after.get("subject") or _("a message")
    if to:
        return _("E-mail “%(subject)s” sent to %(to)s") % {"subject": subject, "to": to}
    return _("E-mail “%(subject)s” sent") % {"subject": subject}


for _kind in (PAYMENT_FAILED, INVOICE_OVERDUE, CONTRACT_CANCELLED, RECEIPT, *REPORT_KINDS.values()):
    customer_action(f"notification.{_kind}", kind="emails")(_email)
# One action per warning (e.g. 7 and 3 days before): every one of them.
customer_action("notification.cancellation_warning_", kind="emails", prefix=True)(_email)


# Reports of a problem with an invoice: what the customer did and what we decided. The
# description (the customer's) and the staff message are notes: the e-mails carry them.
def _reason(entry) -> str:
    reason = entry.after.get("reason") or ""
    if reason not in ReportReason.values:
        return ""
    # The label looked up in the catalogue (its msgids are listed below), so the sentence
    # reads in the page's language whether or not the model's labels are lazy.
    return _(str(ReportReason(reason).label))


# The report reasons' labels, for makemessages: _reason translates them by their text.
_REASON_LABELS = (
    gettext_noop("Wrong amount"),
    gettext_noop("Wrong billing period"),
    gettext_noop("Wrong tax or tax id"),
    gettext_noop("IP blocks not received"),
    gettext_noop("Other"),
)


@customer_action("invoice_report.opened", kind="invoices")
def _reported(entry, loaded) -> str:
    values = {
        "number": entry.after.get("invoice", ""),
        "by": actor_phrase(entry),
        "reason": _reason(entry),
    }
    if values["reason"]:
        if not (get_language() or "en").startswith("de"):  # German keeps its nouns' capitals
            values["reason"] = values["reason"].lower()
        return _("Problem with invoice %(number)s reported%(by)s: %(reason)s") % values
    return _("Problem with invoice %(number)s reported%(by)s") % values


@customer_action("invoice_report.rejected", kind="invoices")
def _rejected(entry, loaded) -> str:
    return _("Report on invoice %(number)s answered: the invoice stands (our e-mail says why)") % {
        "number": entry.after.get("invoice", "")
    }


@customer_action("invoice_report.corrected", kind="invoices")
def _corrected(entry, loaded) -> str:
    return _("Report on invoice %(number)s answered: the invoice is corrected") % {
        "number": entry.after.get("invoice", "")
    }
