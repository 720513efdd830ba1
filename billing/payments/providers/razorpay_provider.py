"""Razorpay (rupee invoices: UPI, net banking, cards, wallets) through the official SDK.

The only code that imports `razorpay`. Pay online is a Razorpay Payment Link for the
amount remaining; its webhooks come to /razorpay/ (billing.payments.webhooks), are verified
here (verify_signature) and turned into the same ProviderEvents as Stripe's
(event_from_razorpay), so the same money services apply them.

Razorpay has no idempotency key on its API. Instead, what we send carries our own unique
reference, and a retry looks the object up by it before creating a second one: a link's
reference_id (Razorpay refuses a second link with the same one), a refund's receipt.
"""

import datetime
import hashlib
import hmac
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import razorpay
import requests
from django.conf import settings
from django.utils import timezone

from core.money import from_minor_units, to_minor_units
from core.tasks import running_in_task

from .base import (
    ChargeOutcome,
    CheckoutSession,
    EventKind,
    PaymentError,
    PaymentProvider,
    ProviderEvent,
    ProviderUnavailable,
    RefundOutcome,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A link lives as long as a Stripe Checkout session (CHECKOUT_REUSE_MINUTES reuses it a
# little less long); Razorpay wants at least 15 minutes.
LINK_LIFETIME = datetime.timedelta(hours=1)

# Where a Payment Link's payment shows in the portal (Payment.method_brand, 20 characters).
METHOD_BRANDS = {
    "upi": "UPI",
    "netbanking": "Net banking",
    "card": "Card",
    "wallet": "Wallet",
    "emi": "EMI",
    "bank_transfer": "Bank transfer",
}


def request_timeout() -> tuple[float, float]:
    """(seconds to connect, seconds to wait for the answer): the same budgets as Stripe's,
    short for a web request (gunicorn's worker timeout), longer inside a Celery task."""
    connect = settings.STRIPE_CONNECT_TIMEOUT_SECONDS
    if running_in_task():
        return connect, settings.STRIPE_TASK_TIMEOUT_SECONDS
    return connect, settings.STRIPE_TIMEOUT_SECONDS


def razorpay_client() -> razorpay.Client:
    # The SDK's own retries stay off (its default): a retry of a create is ours to make,
    # after looking the object up by our reference.
    return razorpay.Client(
        auth=(settings.RAZORPAY_KEY_ID, settings.RAZORPAY_KEY_SECRET),
        base_url=settings.RAZORPAY_API_BASE,
    )


def _call(fn: Callable[[], T]) -> T:
    """Run one Razorpay call and translate its errors into our exception tree.

    The SDK raises BadRequestError for a 4xx it could read (a refusal: PaymentError) and
    ServerError/GatewayError otherwise; a connection failure, a timeout or an answer that
    is not JSON surface as requests' errors. All but the refusal mean "try again later".
    """
    try:
        return fn()
    except razorpay.errors.BadRequestError as exc:
        logger.error("razorpay refused the request: %s", exc)
        raise PaymentError(code="razorpay_bad_request") from exc
    except (razorpay.errors.ServerError, razorpay.errors.GatewayError) as exc:
        logger.warning("razorpay failed: %s", exc)
        raise ProviderUnavailable() from exc
    except requests.RequestException as exc:
        logger.warning("razorpay unreachable: %s", exc)
        raise ProviderUnavailable() from exc


def _notes(payment, invoice) -> dict[str, str]:
    return {
        "invoice_id": str(invoice.pk),
        "invoice_number": invoice.number or "",
        "payment_id": str(payment.pk),
    }


def link_reference(payment, invoice) -> str:
    """The link's reference_id: the invoice number and our attempt. Razorpay takes one
    link per reference_id and an invoice may need several links over time (another amount
    after a part payment, the last one expired), so the number alone would be refused."""
    return f"{invoice.number}-{payment.pk}"[:40]


def _link_outcome(link: dict) -> ChargeOutcome:
    """What a Payment Link says about its payment (GET /v1/payment_links/{id})."""
    status = link.get("status")
    captured = [p for p in (link.get("payments") or []) if p.get("status") == "captured"]
    if status == "paid" or captured:
        paid = link.get("amount_paid")
        return ChargeOutcome(
            status="succeeded",
            provider_payment_id=(captured[-1].get("payment_id") or "") if captured else "",
            brand=METHOD_BRANDS.get(captured[-1].get("method") or "", "") if captured else "",
            amount_received=from_minor_units(paid) if isinstance(paid, int) else None,
            currency=(link.get("currency") or "").upper(),
        )
    if status in ("cancelled", "expired"):
        return ChargeOutcome(status="cancelled")
    return ChargeOutcome(status="pending")


class RazorpayProvider(PaymentProvider):
    name = "razorpay"

    def __init__(self) -> None:
        self.client = razorpay_client()

    def checkout_create(
        self, *, payment, invoice, customer_ref, success_url, cancel_url, language=None
    ):
        reference = link_reference(payment, invoice)
        expires = timezone.now() + LINK_LIFETIME
        customer = invoice.customer
        params = {
            "amount": to_minor_units(payment.amount),
            "currency": payment.currency.upper(),
            "accept_partial": False,
            "reference_id": reference,
            "description": f"Invoice {invoice.number}",
            "customer": {"name": customer.name[:100], "email": customer.email},
            # The payer is sent to the link at once; reminders are the portal's own mails.
            "notify": {"sms": False, "email": False},
            "reminder_enable": False,
            "notes": _notes(payment, invoice),
            # Back to the portal's "payment processing" page, like Stripe's success_url;
            # the webhook, not this redirect, credits the invoice.
            "callback_url": success_url,
            "callback_method": "get",
            "expire_by": int(expires.timestamp()),
        }
        if not customer.email:
            del params["customer"]["email"]
        try:
            link = _call(lambda: self.client.payment_link.create(params, timeout=request_timeout()))
        except PaymentError as exc:
            if isinstance(exc, ProviderUnavailable):
                raise
            # Our own earlier try of this attempt may have made the link before its answer
            # was lost: Razorpay then refuses the reference_id, and the link is found by it.
            link = self._link_by_reference(reference)
            if link is None:
                raise
        return CheckoutSession(id=link["id"], url=link["short_url"])

    def _link_by_reference(self, reference: str) -> dict | None:
        found = _call(
            lambda: self.client.payment_link.all(
                {"reference_id": reference}, timeout=request_timeout()
            )
        )
        for link in found.get("payment_links") or []:
            if link.get("reference_id") == reference and link.get("status") == "created":
                return link
        return None

    def checkout_expire(self, *, checkout_id):
        try:
            _call(lambda: self.client.payment_link.cancel(checkout_id, timeout=request_timeout()))
        except PaymentError as exc:
            # Paid, expired or cancelled already: nothing left to close.
            if isinstance(exc, ProviderUnavailable):
                raise

    def setup_checkout_create(self, *, customer, customer_ref, success_url, cancel_url):
        raise PaymentError("Cards are saved with the card provider, not with Razorpay.")

    def charge_saved_method(self, *, payment, invoice, customer_ref, method_id, off_session):
        raise PaymentError(
            "Saved payment methods are not charged through Razorpay; please pay online.",
            code="razorpay_no_saved_methods",
        )

    def payment_retrieve(self, *, payment):
        if not payment.provider_checkout_id:
            return None
        link = _call(
            lambda: self.client.payment_link.fetch(
                payment.provider_checkout_id, timeout=request_timeout()
            )
        )
        return _link_outcome(link)

    def payment_confirmation(self, *, payment, return_url):
        return self.payment_retrieve(payment=payment) or ChargeOutcome(status="pending")

    def payment_cancel(self, *, payment):
        if payment.provider_checkout_id:
            self.checkout_expire(checkout_id=payment.provider_checkout_id)
            return self.payment_retrieve(payment=payment) or ChargeOutcome(status="cancelled")
        return ChargeOutcome(status="cancelled")

    def refund_create(self, *, payment, amount_minor, idempotency_key, reason):
        pay_id = payment.provider_payment_id
        if not pay_id:
            raise PaymentError("This payment has no Razorpay payment id to refund.")
        # The receipt carries our idempotency key: a retry whose first try reached Razorpay
        # (its answer lost to a timeout) finds that refund instead of refunding twice.
        existing = _call(
            lambda: self.client.payment.fetch_multiple_refund(
                pay_id, {"count": 100}, timeout=request_timeout()
            )
        )
        refund = next(
            (r for r in existing.get("items") or [] if r.get("receipt") == idempotency_key[:40]),
            None,
        )
        if refund is None:
            params = {
                "amount": amount_minor,
                "speed": "normal",
                "receipt": idempotency_key[:40],
                "notes": {
                    "payment_id": str(payment.pk),
                    "invoice_id": str(payment.invoice_id),
                    "reason": reason[:200],
                },
            }
            refund = _call(
                lambda: self.client.payment.refund(pay_id, params, timeout=request_timeout())
            )
        status = {"processed": "succeeded", "failed": "failed"}
        return RefundOutcome(
            id=refund["id"],
            status=status.get(refund.get("status"), "pending"),
            amount=from_minor_units(refund["amount"]),
        )

    def methods_list(self, *, customer_ref):
        return []

    def method_detach(self, *, method_id):
        """Razorpay holds no saved methods of ours."""

    def method_set_default(self, *, customer_ref, method_id):
        """Razorpay holds no saved methods of ours."""


# --- Webhooks -----------------------------------------------------------------------


def verify_signature(body: bytes, signature: str) -> bool:
    """X-Razorpay-Signature is the hex HMAC-SHA256 of the raw body with the webhook secret.

    Computed on the bytes as they arrived (the SDK's helper wants text and re-encodes it),
    compared in constant time. Without a configured secret nothing is genuine: an empty
    key would let anybody sign.
    """
    secret = settings.RAZORPAY_WEBHOOK_SECRET
    if not secret or not signature:
        return False
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.strip())


def _entity(event: dict, name: str) -> dict:
    payload = event.get("payload")
    wrapper = payload.get(name) if isinstance(payload, dict) else None
    entity = wrapper.get("entity") if isinstance(wrapper, dict) else None
    return entity if isinstance(entity, dict) else {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _ids(*entities: dict) -> dict:
    """Our payment and invoice ids from the first entity whose notes carry them.

    Razorpay sends empty notes as a JSON list, not an object."""
    for entity in entities:
        notes = entity.get("notes")
        if isinstance(notes, dict) and notes.get("payment_id"):
            return {
                "payment_id": _int_or_none(notes.get("payment_id")),
                "invoice_id": _int_or_none(notes.get("invoice_id")),
            }
    return {"payment_id": None, "invoice_id": None}


def _amount(entity: dict) -> Decimal | None:
    minor = entity.get("amount")
    return from_minor_units(minor) if isinstance(minor, int) and minor >= 0 else None


def _link_of(payment: dict) -> str:
    """The Payment Link a payment was made on, when the payment itself says so: Razorpay
    describes a link's payments as "#" and the link id without its "plink_" prefix."""
    description = payment.get("description") or ""
    if description.startswith("#") and len(description) > 1 and " " not in description:
        return f"plink_{description[1:]}"
    return ""


def _paid(payment: dict, **common) -> ProviderEvent:
    return ProviderEvent(
        kind=EventKind.PAYMENT_SUCCEEDED,
        provider_payment_id=payment.get("id") or "",
        brand=METHOD_BRANDS.get(payment.get("method") or "", ""),
        amount_received=_amount(payment),
        currency=(payment.get("currency") or "").upper(),
        **common,
    )


def event_from_razorpay(event: dict) -> ProviderEvent | None:
    """A verified Razorpay event in our terms; None for types we do not act on.

    The payer is not compared by a Razorpay customer id: a Payment Link carries the
    customer's details, not a customer object, and its payment names none. What ties the
    money to the invoice is the link itself (our notes: invoice and payment ids, and the
    link id), which find_payment checks against the payment it finds.
    """
    kind = event.get("event", "")
    payment = _entity(event, "payment")
    if kind == "payment_link.paid":
        link = _entity(event, "payment_link")
        order = _entity(event, "order")
        if not payment:
            return None
        return _paid(payment, checkout_id=link.get("id") or "", **_ids(link, order, payment))
    if kind == "payment.captured":
        return _paid(payment, checkout_id=_link_of(payment), **_ids(payment))
    if kind == "payment.failed":
        return ProviderEvent(
            kind=EventKind.PAYMENT_FAILED,
            provider_payment_id=payment.get("id") or "",
            checkout_id=_link_of(payment),
            failure_code=(payment.get("error_reason") or payment.get("error_code") or "failed")[
                :64
            ],
            failure_message=payment.get("error_description") or "The payment did not go through.",
            **_ids(payment),
        )
    if kind in ("refund.processed", "refund.failed"):
        refund = _entity(event, "refund")
        amount = _amount(refund)
        if not refund.get("id") or amount is None:
            return None
        common = {
            "provider_payment_id": refund.get("payment_id") or payment.get("id") or "",
            "refunds": ((refund["id"], amount),),
            **_ids(refund, payment),
        }
        if kind == "refund.failed":
            return ProviderEvent(kind=EventKind.REFUND_FAILED, failure_code="failed", **common)
        # A refunded payment was paid: what it took is what was received, should the
        # refund's event come before the payment's own.
        return ProviderEvent(
            kind=EventKind.REFUNDED,
            amount_received=_amount(payment) if payment else None,
            currency=(payment.get("currency") or "").upper(),
            **common,
        )
    return None
