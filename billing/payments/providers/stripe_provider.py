"""Stripe through stripe-python's StripeClient. With the webhook module, the only code that
imports `stripe`. Amounts go out in minor units; every create carries an idempotency key."""

import datetime
import json
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any, TypeVar

import stripe
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from core.money import from_minor_units, to_minor_units
from core.tasks import running_in_task

from .base import (
    AuthenticationRequired,
    CardDeclined,
    ChargeOutcome,
    CheckoutSession,
    EventKind,
    MethodInfo,
    PaymentError,
    PaymentProvider,
    ProviderBusy,
    ProviderEvent,
    ProviderUnavailable,
    RefundOutcome,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Sessions we create live this long; billing.payments.services reuses one a little less long.
CHECKOUT_LIFETIME = datetime.timedelta(hours=1)

_PI_STATUS = {
    "succeeded": "succeeded",
    "processing": "processing",
    "requires_action": "requires_action",
    "requires_confirmation": "requires_action",
    "requires_payment_method": "failed",
    "canceled": "cancelled",
    "requires_capture": "processing",
}


def request_budget() -> tuple[tuple[float, float], int]:
    """((seconds to connect, seconds to wait for the answer), retries) for a call made now.

    A web request gets the short budget, which keeps it under gunicorn's worker timeout so
    the payer sees the "try again" page; a Celery task (core.tasks) may wait longer.
    """
    connect = settings.STRIPE_CONNECT_TIMEOUT_SECONDS
    if running_in_task():
        return (
            (connect, settings.STRIPE_TASK_TIMEOUT_SECONDS),
            settings.STRIPE_TASK_MAX_NETWORK_RETRIES,
        )
    return (connect, settings.STRIPE_TIMEOUT_SECONDS), settings.STRIPE_MAX_NETWORK_RETRIES


def stripe_client() -> stripe.StripeClient:
    timeout, retries = request_budget()
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=retries,
        # requests takes (connect, read); stripe-python passes it through as it is.
        http_client=stripe.RequestsClient(timeout=timeout),  # type: ignore[arg-type]
    )


def _plain(obj: Any) -> Any:
    return obj.to_dict() if isinstance(obj, stripe.StripeObject) else obj


def _call(fn: Callable[[], T]) -> T:
    """Run one Stripe call and translate its errors into our exception tree."""
    try:
        return fn()
    except stripe.CardError as exc:
        err = exc.error
        code = (err.decline_code if err else None) or exc.code or "card_declined"
        pi = _plain(getattr(err, "payment_intent", None)) if err else None
        message = exc.user_message or CardDeclined.default_message
        cls = AuthenticationRequired if exc.code == "authentication_required" else CardDeclined
        declined = cls(message if cls is CardDeclined else "", code=code)
        declined.provider_payment_id = (pi or {}).get("id", "") if pi else ""
        raise declined from exc
    except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
        logger.warning("stripe unreachable: %s", exc)
        raise ProviderUnavailable() from exc
    except stripe.StripeError as exc:
        status = exc.http_status or 0
        if status == 409:
            # idempotency_key_in_use: the same attempt is still being processed (a retry
            # racing the original, two workers resuming it); lock_timeout: another request
            # holds the object. Neither says anything about the payment: the first request
            # decides it, and this one is tried again later, never recorded as a failure.
            logger.warning("stripe busy (409 %s): %s", exc.code, exc)
            raise ProviderBusy() from exc
        if status >= 500 or status == 0:
            logger.warning("stripe failed (%s): %s", status, exc)
            raise ProviderUnavailable() from exc
        logger.error("stripe refused the request (%s): %s", status, exc)
        raise PaymentError(code=exc.code or "stripe_error") from exc


def _call_plain(fn: Callable[[], Any]) -> dict:
    return _plain(_call(fn))


# How a bank debit's method reads on a payment (Payment.method_brand holds 20 characters).
BANK_BRANDS = {"sepa_debit": "SEPA Direct Debit", "us_bank_account": "ACH bank debit"}


def _card(obj: Any) -> tuple[str, str]:
    """(brand, last4) of a charge's payment method: a card's brand, or the kind of debit."""
    details = (obj or {}).get("payment_method_details") or {}
    for bank_type, brand in BANK_BRANDS.items():
        if details.get(bank_type):
            return brand, details[bank_type].get("last4") or ""
    card = details.get("card") or {}
    return card.get("brand") or "", card.get("last4") or ""


def _accepted_at(mandate: dict) -> datetime.datetime | None:
    when = (mandate.get("customer_acceptance") or {}).get("accepted_at")
    return datetime.datetime.fromtimestamp(when, tz=datetime.UTC) if when else None


def _method_info(pm: Any, mandate: Any = None) -> MethodInfo:
    """A PaymentMethod (card, sepa_debit, us_bank_account) in our terms; `mandate`, when
    known (the expanded mandate of a SetupIntent), adds its reference and acceptance."""
    pm = _plain(pm)
    kind = pm.get("type") or "card"
    if kind in BANK_BRANDS:
        bank = pm.get(kind) or {}
        mandate = _plain(mandate) if mandate and not isinstance(mandate, str) else {}
        details = (mandate.get("payment_method_details") or {}).get(kind) or {}
        return MethodInfo(
            id=pm["id"],
            brand="",
            last4=bank.get("last4") or "",
            exp_month=None,
            exp_year=None,
            type=kind,
            # SEPA names the bank by its code only; ACH by name.
            bank_name=bank.get("bank_name") or bank.get("bank_code") or "",
            mandate_reference=details.get("reference") or "",
            mandate_id=mandate.get("id") or "",
            mandate_accepted_at=_accepted_at(mandate),
        )
    card = pm.get("card") or {}
    return MethodInfo(
        id=pm["id"],
        brand=card.get("brand") or "card",
        last4=card.get("last4") or "",
        exp_month=card.get("exp_month") or 1,
        exp_year=card.get("exp_year") or 2000,
    )


def _object_id(value: Any) -> str:
    """An id Stripe sends either as a string or, when expanded, inside the object."""
    if isinstance(value, str):
        return value
    return (value or {}).get("id", "") or ""


def _received(obj: dict, amount_field: str) -> tuple[Decimal | None, str, str]:
    """(amount received, ISO currency, customer id) as Stripe reports them on `obj`.

    Stripe's currencies are lower case; ours are ISO upper case. A missing amount stays None
    so the money services never mistake silence for the amount asked.
    """
    minor = obj.get(amount_field)
    amount = from_minor_units(minor) if isinstance(minor, int) else None
    return amount, (obj.get("currency") or "").upper(), _object_id(obj.get("customer"))


def _outcome_from_intent(pi: Any) -> ChargeOutcome:
    pi = _plain(pi)
    charge = pi.get("latest_charge")
    charge_id, brand, last4 = "", "", ""
    if isinstance(charge, str):
        charge_id = charge
    elif charge:
        charge_id = charge.get("id", "")
        brand, last4 = _card(charge)
    error = pi.get("last_payment_error") or {}
    next_action = pi.get("next_action") or {}
    redirect = next_action.get("redirect_to_url") or {}
    amount, currency, customer = _received(pi, "amount_received")
    return ChargeOutcome(
        status=_PI_STATUS.get(pi.get("status"), "pending"),
        provider_payment_id=pi["id"],
        charge_id=charge_id,
        brand=brand,
        last4=last4,
        failure_code=error.get("decline_code") or error.get("code") or "",
        failure_message=error.get("message") or "",
        action_url=(redirect.get("url") or "")
        if next_action.get("type") == "redirect_to_url"
        else "",
        amount_received=amount,
        currency=currency,
        provider_customer_id=customer,
    )


def _metadata(payment, invoice) -> dict[str, str]:
    return {
        "invoice_id": str(invoice.pk),
        "invoice_number": invoice.number or "",
        "payment_id": str(payment.pk),
    }


# What Pay online offers by invoice currency: a card, or the bank debit that currency's
# customers use (SEPA Direct Debit for EUR, ACH for USD). Debits are asynchronous: the session
# completes "unpaid" and the outcome follows days later (checkout.session.async_payment_*).
CHECKOUT_METHOD_TYPES = {
    "EUR": ["card", "sepa_debit"],
    "USD": ["card", "us_bank_account"],
}


SETUP_METHOD_TYPES = ["card", "sepa_debit"]
# The portal's languages, which are also values of Checkout's `locale`.
CHECKOUT_LOCALES = ("de", "en")


def _saved_method(method_id: str):
    from billing.payments.models import PaymentMethod

    return PaymentMethod.objects.filter(provider="stripe", provider_id=method_id).first()


class StripeProvider(PaymentProvider):
    name = "stripe"

    def __init__(self) -> None:
        self.client = stripe_client()

    @classmethod
    def known_customer_ref(cls, *, customer) -> str:
        return customer.stripe_customer_id

    def customer_ref(self, *, customer) -> str:
        if customer.stripe_customer_id:
            return customer.stripe_customer_id
        created = _call(
            lambda: self.client.v1.customers.create(
                {
                    "name": customer.name,
                    "email": customer.email,
                    "metadata": {"customer_id": str(customer.pk)},
                },
                {"idempotency_key": f"customer-{customer.pk}"},
            )
        )
        return created.id

    def checkout_create(
        self, *, payment, invoice, customer_ref, success_url, cancel_url, language=None
    ):
        metadata = _metadata(payment, invoice)
        methods = CHECKOUT_METHOD_TYPES.get(payment.currency.upper(), ["card"])
        expires = timezone.now() + CHECKOUT_LIFETIME
        session = _call(
            lambda: self.client.v1.checkout.sessions.create(
                {
                    "mode": "payment",
                    "customer": customer_ref,
                    "client_reference_id": invoice.number,
                    "line_items": [
                        {
                            "quantity": 1,
                            "price_data": {
                                "currency": payment.currency.lower(),
                                "unit_amount": to_minor_units(payment.amount),
                                "product_data": {"name": f"Invoice {invoice.number}"},
                            },
                        }
                    ],
                    "metadata": metadata,
                    "payment_method_types": methods,
                    "payment_intent_data": {
                        "metadata": metadata,
                        "description": f"Invoice {invoice.number}",
                    },
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                    "expires_at": int(expires.timestamp()),
                    # Without it Checkout follows the browser, and the payer of a German
                    # invoice forwarded to an English browser would leave German pages for
                    # an English one. Stripe takes "de" and "en" as they are.
                    **({"locale": language} if language in CHECKOUT_LOCALES else {}),
                },
                {"idempotency_key": payment.idempotency_key},
            )
        )
        return CheckoutSession(id=session.id, url=session.url)

    def checkout_expire(self, *, checkout_id):
        try:
            _call(lambda: self.client.v1.checkout.sessions.expire(checkout_id))
        except PaymentError as exc:
            # Already completed or expired: nothing left to expire.
            if isinstance(exc, ProviderUnavailable):
                raise

    def setup_checkout_create(self, *, customer, customer_ref, success_url, cancel_url):
        session = _call(
            lambda: self.client.v1.checkout.sessions.create(
                {
                    "mode": "setup",
                    "customer": customer_ref,
                    "currency": "eur",
                    # A card, or an IBAN with a SEPA Direct Debit mandate (Checkout shows
                    # the mandate text and the SetupIntent carries the mandate).
                    "payment_method_types": SETUP_METHOD_TYPES,
                    "metadata": {"customer_id": str(customer.pk)},
                    "success_url": success_url,
                    "cancel_url": cancel_url,
                }
            )
        )
        return CheckoutSession(id=session.id, url=session.url)

    def charge_saved_method(self, *, payment, invoice, customer_ref, method_id, off_session):
        # A saved bank account is debited under its mandate: the intent names the method's
        # type (Stripe refuses a sepa_debit method on a card-only intent) and answers
        # "processing"; payment_intent.succeeded or payment_failed follows days later.
        saved = _saved_method(method_id)
        method_type = saved.type if saved is not None else "card"
        params: dict[str, Any] = {
            "amount": to_minor_units(payment.amount),
            "currency": payment.currency.lower(),
            "customer": customer_ref,
            "payment_method": method_id,
            "payment_method_types": [method_type],
            "confirm": True,
            "off_session": off_session,
            "description": f"Invoice {invoice.number}",
            "metadata": _metadata(payment, invoice),
            "expand": ["latest_charge"],
        }
        if saved is not None and saved.mandate_id:
            params["mandate"] = saved.mandate_id
        if not off_session and method_type == "card":
            # With a return URL Stripe answers 3-D Secure with a page to send the customer
            # to (next_action.redirect_to_url) instead of asking for Stripe.js.
            path = reverse("payments:payment-confirmed", args=[invoice.number, payment.pk])
            params["return_url"] = f"{settings.SITE_URL}{path}"
        pi = _call(
            lambda: self.client.v1.payment_intents.create(
                params, {"idempotency_key": payment.idempotency_key}
            )
        )
        return _outcome_from_intent(pi)

    def payment_retrieve(self, *, payment):
        if payment.provider_payment_id:
            pi = _call(
                lambda: self.client.v1.payment_intents.retrieve(
                    payment.provider_payment_id, {"expand": ["latest_charge"]}
                )
            )
            return _outcome_from_intent(pi)
        if payment.provider_checkout_id:
            session = _call_plain(
                lambda: self.client.v1.checkout.sessions.retrieve(
                    payment.provider_checkout_id, {"expand": ["payment_intent.latest_charge"]}
                )
            )
            pi = session.get("payment_intent")
            if pi and not isinstance(pi, str):
                return _outcome_from_intent(pi)
            if session.get("status") == "expired":
                return ChargeOutcome(status="cancelled")
            if session.get("payment_status") in ("paid", "no_payment_required"):
                amount, currency, customer = _received(session, "amount_total")
                return ChargeOutcome(
                    status="succeeded",
                    provider_payment_id=pi or "",
                    amount_received=amount,
                    currency=currency,
                    provider_customer_id=customer,
                )
            return ChargeOutcome(status="pending")
        return None

    def payment_confirmation(self, *, payment, return_url):
        # The return URL was fixed when the PaymentIntent was confirmed (charge_saved_method);
        # an off-session one was not, and Stripe left it without a page to confirm on.
        if not payment.provider_payment_id:
            return ChargeOutcome(status="requires_action")
        return self.payment_retrieve(payment=payment)

    def payment_cancel(self, *, payment):
        if not payment.provider_payment_id:
            # It never reached Stripe as far as we know; should it have, its success event
            # still finds the attempt by id and is applied or refunded.
            return ChargeOutcome(status="cancelled")
        try:
            pi = _call(
                lambda: self.client.v1.payment_intents.cancel(
                    payment.provider_payment_id,
                    {"cancellation_reason": "abandoned"},
                    {"idempotency_key": f"{payment.idempotency_key}-cancel"},
                )
            )
        except ProviderUnavailable:
            raise
        except PaymentError:
            # Stripe refuses to cancel an intent that succeeded (or is processing) meanwhile.
            return self.payment_retrieve(payment=payment)
        return _outcome_from_intent(pi)

    def refund_create(self, *, payment, amount_minor, idempotency_key, reason):
        params: dict[str, Any] = {
            "amount": amount_minor,
            "metadata": {"payment_id": str(payment.pk), "invoice_id": str(payment.invoice_id)},
        }
        if payment.provider_payment_id:
            params["payment_intent"] = payment.provider_payment_id
        else:
            params["charge"] = payment.provider_charge_id
        if reason == "duplicate":
            params["reason"] = "duplicate"
        refund = _call(
            lambda: self.client.v1.refunds.create(params, {"idempotency_key": idempotency_key})
        )
        status = {"succeeded": "succeeded", "failed": "failed", "canceled": "failed"}
        return RefundOutcome(
            id=refund.id,
            status=status.get(refund.status, "pending"),
            amount=from_minor_units(refund.amount),
        )

    def methods_list(self, *, customer_ref):
        page = _call(
            lambda: self.client.v1.payment_methods.list({"customer": customer_ref, "limit": 100})
        )
        return [_method_info(pm) for pm in page.data]

    def method_detach(self, *, method_id):
        _call(lambda: self.client.v1.payment_methods.detach(method_id))

    def method_set_default(self, *, customer_ref, method_id):
        _call(
            lambda: self.client.v1.customers.update(
                customer_ref, {"invoice_settings": {"default_payment_method": method_id}}
            )
        )

    def refunds_for_charge(self, *, charge_id: str) -> list[tuple[str, Decimal]]:
        page = _call(lambda: self.client.v1.refunds.list({"charge": charge_id, "limit": 100}))
        return [(r.id, from_minor_units(r.amount)) for r in page.data if r.status == "succeeded"]


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def event_from_stripe(event: dict) -> ProviderEvent | None:
    """A verified Stripe event in our terms; None for types we do not act on."""
    kind = event.get("type", "")
    obj = (event.get("data") or {}).get("object") or {}
    meta = obj.get("metadata") or {}
    ids = {
        "payment_id": _int_or_none(meta.get("payment_id")),
        "invoice_id": _int_or_none(meta.get("invoice_id")),
    }
    # When Stripe made the event: a "processing" delivered after the failure it preceded
    # must not put the payment back in processing (see payment_record_processing).
    when = {"created": _int_or_none(event.get("created"))}
    if kind.startswith("checkout.session."):
        pi = obj.get("payment_intent")
        pi_id = pi if isinstance(pi, str) else (pi or {}).get("id", "")
        common = {**ids, "checkout_id": obj.get("id", ""), "provider_payment_id": pi_id or ""}
        if obj.get("mode") == "setup":
            if kind != "checkout.session.completed":
                return None
            setup = obj.get("setup_intent")
            setup_id = setup if isinstance(setup, str) else (setup or {}).get("id", "")
            return ProviderEvent(
                kind=EventKind.SETUP_COMPLETED,
                setup_id=setup_id or "",
                provider_customer_id=obj.get("customer") or "",
                customer_id=_int_or_none(meta.get("customer_id")),
            )
        if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
            if obj.get("payment_status") == "unpaid" and kind == "checkout.session.completed":
                # A bank debit (SEPA, ACH) was submitted: async_payment_succeeded/failed follows.
                return ProviderEvent(kind=EventKind.PAYMENT_PROCESSING, **common, extra=when)
            if obj.get("payment_status") not in ("paid", "no_payment_required"):
                return None
            amount, currency, customer = _received(obj, "amount_total")
            return ProviderEvent(
                kind=EventKind.PAYMENT_SUCCEEDED,
                amount_received=amount,
                currency=currency,
                provider_customer_id=customer,
                **common,
            )
        if kind == "checkout.session.async_payment_failed":
            return ProviderEvent(
                kind=EventKind.PAYMENT_FAILED,
                failure_code="async_payment_failed",
                failure_message="The payment did not go through.",
                **common,
            )
        if kind == "checkout.session.expired":
            return ProviderEvent(kind=EventKind.CHECKOUT_EXPIRED, **common)
        return None
    if kind.startswith("payment_intent."):
        outcome = _outcome_from_intent(obj)
        common = {
            **ids,
            "provider_payment_id": obj.get("id", ""),
            "charge_id": outcome.charge_id,
            "brand": outcome.brand,
            "last4": outcome.last4,
        }
        if kind == "payment_intent.succeeded":
            return ProviderEvent(
                kind=EventKind.PAYMENT_SUCCEEDED,
                amount_received=outcome.amount_received,
                currency=outcome.currency,
                provider_customer_id=outcome.provider_customer_id,
                **common,
            )
        if kind == "payment_intent.processing":
            return ProviderEvent(kind=EventKind.PAYMENT_PROCESSING, **common, extra=when)
        if kind == "payment_intent.payment_failed":
            return ProviderEvent(
                kind=EventKind.PAYMENT_FAILED,
                failure_code=outcome.failure_code or "payment_failed",
                failure_message=outcome.failure_message or CardDeclined.default_message,
                **common,
            )
        if kind == "payment_intent.requires_action":
            return ProviderEvent(
                kind=EventKind.PAYMENT_REQUIRES_ACTION,
                failure_code="authentication_required",
                failure_message=AuthenticationRequired.default_message,
                **common,
            )
        return None
    if kind == "charge.refunded":
        brand, last4 = _card(obj)
        # A refunded charge was paid: what it captured is what was received.
        amount, currency, customer = _received(obj, "amount_captured")
        refunds = tuple(
            (r["id"], from_minor_units(r["amount"]))
            for r in ((obj.get("refunds") or {}).get("data") or [])
            if r.get("status") == "succeeded"
        )
        return ProviderEvent(
            kind=EventKind.REFUNDED,
            **ids,
            provider_payment_id=obj.get("payment_intent") or "",
            charge_id=obj.get("id", ""),
            brand=brand,
            last4=last4,
            refunds=refunds,
            amount_received=amount,
            currency=currency,
            provider_customer_id=customer,
            extra={"amount_refunded": from_minor_units(obj.get("amount_refunded") or 0)},
        )
    if kind in ("refund.created", "refund.updated", "refund.failed", "charge.refund.updated"):
        status = obj.get("status")
        common = {
            "payment_id": ids["payment_id"],
            "invoice_id": ids["invoice_id"],
            "provider_payment_id": obj.get("payment_intent") or "",
            "charge_id": obj.get("charge") or "",
            "refunds": ((obj["id"], from_minor_units(obj["amount"])),),
        }
        # A refund may fail after it succeeded (the card was closed): Stripe's failed and
        # canceled are final, so what the failure says wins over any success event.
        if kind == "refund.failed" or status in ("failed", "canceled"):
            return ProviderEvent(
                kind=EventKind.REFUND_FAILED,
                failure_code=obj.get("failure_reason") or status or "failed",
                **common,
            )
        if status != "succeeded":
            return None
        return ProviderEvent(kind=EventKind.REFUNDED, **common)
    if kind in ("charge.dispute.created", "charge.dispute.closed", "charge.dispute.updated"):
        # A returned bank debit (SEPA chargeback, ACH return) cannot be contested: the money
        # is gone when the dispute is created, so it is applied as a lost dispute at once.
        returned_debit = obj.get("reason") == "debit_not_authorized"
        return ProviderEvent(
            kind=EventKind.DISPUTE_CLOSED
            if kind == "charge.dispute.closed" or returned_debit
            else EventKind.DISPUTE_OPENED,
            provider_payment_id=obj.get("payment_intent") or "",
            charge_id=obj.get("charge") or "",
            dispute_id=obj.get("id", ""),
            dispute_status="lost" if returned_debit else (obj.get("status") or ""),
            dispute_amount=from_minor_units(obj.get("amount") or 0),
        )
    if kind == "setup_intent.succeeded":
        # Saved outside Checkout (or alongside it): the intent names the method and its
        # mandate by id; both are read back expanded (setup_intent_method).
        if obj.get("usage") == "on_session" or not obj.get("customer"):
            return None
        return ProviderEvent(
            kind=EventKind.SETUP_COMPLETED,
            setup_id=obj.get("id", ""),
            provider_customer_id=_object_id(obj.get("customer")),
            customer_id=_int_or_none(meta.get("customer_id")),
        )
    if kind in ("payment_method.attached", "payment_method.updated"):
        if not obj.get("customer"):
            return None
        return ProviderEvent(
            kind=EventKind.METHOD_ATTACHED,
            provider_customer_id=obj["customer"],
            method=_method_info(obj),
        )
    if kind == "payment_method.detached":
        return ProviderEvent(kind=EventKind.METHOD_DETACHED, method=_method_info(obj))
    return None


def setup_intent_method(setup_id: str) -> MethodInfo | None:
    """The method a completed setup saved, with its mandate when it is a bank account."""
    client = stripe_client()
    intent = _call_plain(
        lambda: client.v1.setup_intents.retrieve(
            setup_id, {"expand": ["payment_method", "mandate"]}
        )
    )
    pm = intent.get("payment_method")
    if not pm or isinstance(pm, str):
        return None
    return _method_info(pm, intent.get("mandate"))


def construct_event(payload: bytes, signature: str) -> dict:
    """Verify signature and timestamp tolerance; raises ValueError when either is wrong.

    stripe.Webhook.construct_event's check, without turning the payload into StripeObjects
    only to turn it back into a dict (half the intake's Python time).
    """
    text = payload.decode("utf-8", errors="replace")
    try:
        stripe.WebhookSignature.verify_header(
            text, signature, settings.STRIPE_WEBHOOK_SECRET, settings.STRIPE_WEBHOOK_TOLERANCE
        )
    except stripe.SignatureVerificationError as exc:
        raise ValueError(str(exc)) from exc
    try:
        event = json.loads(text)
    except RecursionError:
        # Signed, but nested deeper than any Stripe object: refuse it like a bad body.
        raise ValueError("event body nested too deeply") from None
    if not isinstance(event, dict):
        raise ValueError("event body is not a JSON object")
    return event
