"""Signed "Pay online" links that work without a login (as printed in the PDF).

The token names one invoice (id and number) and is signed with SECRET_KEY under
its own salt, so it cannot be forged, moved to another invoice or reused as any
other kind of token. It carries no expiry: a PDF is kept for years; whether the
invoice is still payable is decided when the link is opened.
"""

from django.conf import settings
from django.core import signing
from django.urls import reverse

from billing.invoices.models import Invoice

_SALT = "billing.pay-link.v1"


def pay_token(invoice: Invoice) -> str:
    return signing.dumps({"i": invoice.pk, "n": invoice.number}, salt=_SALT, compress=True)


def invoice_for_pay_token(token: str, *, number: str) -> Invoice | None:
    """The invoice the token was made for, if it is genuine and names `number`; else None."""
    try:
        data = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        return None
    if not isinstance(data, dict) or data.get("n") != number:
        return None
    return (
        Invoice.objects.select_related("customer", "contract")
        .filter(pk=data.get("i"), number=number)
        .first()
    )


def pay_url(invoice: Invoice) -> str:
    """Absolute SITE_URL link to the invoice's pay page, carrying the signed token."""
    path = reverse("payments:invoice-pay", args=[invoice.number])
    return f"{settings.SITE_URL}{path}?token={pay_token(invoice)}"
