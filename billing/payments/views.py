"""Pay online, the checkout return pages, saved payment methods and the sandbox pages.

Views only decide who may do what and call billing.payments.services; they never write
money state themselves.
"""

import contextlib
import logging
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, prefetch_related_objects
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from billing.invoices.documents.content import buyer as document_buyer
from billing.invoices.documents.content import language as document_language
from billing.invoices.links import invoice_for_pay_token
from billing.invoices.models import Invoice, InvoiceLine, InvoiceStatus
from billing.invoices.selectors import invoice_for_customer_or_404
from billing.payments import services as payments
from billing.payments.mandates import mandate_text_for
from billing.payments.models import (
    BANK_METHOD_TYPES,
    Payment,
    PaymentKind,
    PaymentMethod,
    PaymentMethodType,
    PaymentStatus,
)
from contracts.context import active_membership, member_required, memberships_of
from core import l10n
from core.errors import DomainError
from core.queue import enqueue

from .providers import PaymentError, ProviderUnavailable
from .providers import sandbox as sandbox_provider
from .providers.base import AuthenticationRequired
from .receipts import invoice_receipts, receipt_or_404, receipt_pdf_bytes
from .selectors import methods_with_contracts
from .tasks import sandbox_settle_debit

logger = logging.getLogger(__name__)


class _Redirect303(HttpResponseRedirect):
    status_code = 303


# The card-setup pages this session started (newest last): a setup link works only in
# the session that asked for it, not for whoever else sees the URL.
SETUP_SESSION_KEY = "card_setup_urls"
SETUP_SESSION_KEEP = 5


def _may_use_saved_methods(request: HttpRequest, customer_id: int) -> bool:
    """Saved cards are for a logged-in owner or billing member of the customer, never for
    the holder of a pay link (the link in the PDF pays with new payment details only)."""
    if not request.user.is_authenticated:
        return False
    return any(m.customer_id == customer_id and m.can_pay for m in memberships_of(request.user))


def _pay_context(request: HttpRequest, number: str) -> tuple[Invoice, str, bool]:
    """(invoice, token, is_member). A token must be genuine; else the member's own invoice."""
    token = request.GET.get("token") or request.POST.get("token") or ""
    if token:
        invoice = invoice_for_pay_token(token, number=number)
        if invoice is None:
            raise Http404("No such invoice.")
        speak_document_language(request, invoice)
        membership = active_membership(request)
        is_member = bool(membership and membership.customer_id == invoice.customer_id)
        if is_member:
            request.membership = membership
        return invoice, token, is_member
    membership = active_membership(request)
    if membership is None:
        raise _LoginNeeded
    request.membership = membership
    return invoice_for_customer_or_404(membership.customer, number), "", True


def speak_document_language(request: HttpRequest, invoice: Invoice) -> None:
    """The hosted invoice pages, opened with the signed link from the PDF, read in the
    invoice's document language (the language of the PDF the payer holds, whoever forwarded
    it to them), unless the visitor chose a language with the switcher: the language cookie
    is that choice and wins. Without the link (a member in the portal) the page follows the
    person's choice or browser like every other page."""
    if request.COOKIES.get(settings.LANGUAGE_COOKIE_NAME) in dict(settings.LANGUAGES):
        return
    language = document_language(invoice)
    translation.activate(language)  # LocaleMiddleware's response (Content-Language) follows
    request.LANGUAGE_CODE = language


class _LoginNeeded(Exception):
    pass


def _with_token(url: str, token: str) -> str:
    return f"{url}?{urlencode({'token': token})}" if token else url


def _hosted_invoice_context(invoice: Invoice, token: str, *, is_member: bool) -> dict:
    """What the hosted invoice page shows (Stripe's hosted invoice page is the model): the
    seller, the invoice with its lines and taxes, the PDF and the receipts so far. Reachable
    by the signed link in the PDF without a login, so every link on it carries the token."""
    prefetch_related_objects(
        [invoice],
        Prefetch("lines", queryset=InvoiceLine.objects.select_related("block")),
        "tax_lines",
        "payments",
    )
    if is_member and not token:
        pdf_url = reverse("invoices:invoice-pdf", args=[invoice.number])
    else:
        pdf_url = _with_token(
            reverse("invoices:invoice-pdf-for-link", args=[invoice.number]), token
        )
    bill_to = document_buyer(invoice)
    return {
        "invoice": invoice,
        "token": token,
        "is_member": is_member,
        "today": timezone.localdate(),
        "seller": settings.SELLER,
        # The buyer as the PDF prints it: the address in its parts, the country in words.
        "bill_to_name": bill_to.name or invoice.customer.name,
        "bill_to_lines": [
            *bill_to.address_lines,
            *([l10n.country_name(bill_to.country)] if bill_to.country else []),
        ],
        "lines": list(invoice.lines.all()),
        "tax_lines": list(invoice.tax_lines.all()),
        "pdf_url": pdf_url,
        "receipts": _receipt_links(invoice, list(invoice.payments.all()), token),
    }


def _receipt_links(invoice: Invoice, payments_list: list[Payment], token: str) -> list[dict]:
    links = []
    for receipt in invoice_receipts(invoice, payments_list):
        args = [invoice.number, receipt.payment.pk]
        links.append(
            {
                "receipt": receipt,
                "url": _with_token(reverse("payments:payment-receipt", args=args), token),
                "pdf_url": _with_token(reverse("payments:payment-receipt-pdf", args=args), token),
            }
        )
    return links


# The currency each bank debit collects in: a saved IBAN pays EUR invoices, an ACH account USD.
BANK_METHOD_CURRENCY = {
    PaymentMethodType.SEPA_DEBIT: "EUR",
    PaymentMethodType.US_BANK_ACCOUNT: "USD",
}


def _saved_methods_for(invoice: Invoice) -> list[PaymentMethod]:
    """The customer's saved methods that can pay this invoice: every card, and a bank
    account only for the currency its debit scheme collects in."""
    methods = PaymentMethod.objects.filter(
        customer_id=invoice.customer_id, provider=settings.PAYMENT_PROVIDER
    )
    return [
        m
        for m in methods
        if not m.is_bank or BANK_METHOD_CURRENCY.get(m.type) == invoice.currency.upper()
    ]


@require_http_methods(["GET", "POST"])
def invoice_pay(request: HttpRequest, number: str) -> HttpResponse:
    """GET: what is due and a button; POST: 303 to the checkout (Stripe or the sandbox)."""
    try:
        invoice, token, is_member = _pay_context(request, number)
    except _LoginNeeded:
        return redirect(f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")
    if is_member and not token and not request.membership.can_pay:
        raise PermissionDenied(_("Your role can view invoices but not pay them."))
    may_use_saved = is_member and request.membership.can_pay
    context = {
        **_hosted_invoice_context(invoice, token, is_member=is_member),
        "error": "",
        "saved": _saved_methods_for(invoice) if may_use_saved else [],
    }
    try:
        payments.invoice_check_payable_online(invoice)
    except DomainError as exc:
        context["not_payable"] = exc.message
        return render(request, "billing/payments/pay.html", context, status=200)
    if request.method == "GET":
        return render(request, "billing/payments/pay.html", context)
    if request.POST.get("payment_method") and may_use_saved:
        chosen = request.POST["payment_method"]
        if len(chosen) > 255 or not chosen.isprintable():
            context["error"] = _("Choose one of your saved cards.")
            return render(request, "billing/payments/pay.html", context, status=400)
        return _pay_with_saved_method(request, invoice, context)
    success = reverse("payments:checkout-success", args=[invoice.number])
    cancel = reverse("payments:checkout-cancel", args=[invoice.number])
    query = f"?{urlencode({'token': token})}" if token else ""
    try:
        url = payments.checkout_start(
            invoice_id=invoice.pk,
            actor=request.user if request.user.is_authenticated else "pay link",
            success_url=f"{settings.SITE_URL}{success}{query}",
            cancel_url=f"{settings.SITE_URL}{cancel}{query}",
            # The page's language: the invoice's for the PDF's link (speak_document_language)
            # unless the visitor chose one, the member's own otherwise.
            language=translation.get_language(),
        )
    except DomainError as exc:
        context["error"] = exc.message
        return render(request, "billing/payments/pay.html", context, status=409)
    except PaymentError as exc:
        context["error"] = exc.message
        status = 503 if isinstance(exc, ProviderUnavailable) else 402
        return render(request, "billing/payments/pay.html", context, status=status)
    return _Redirect303(url)


def _pay_with_saved_method(request: HttpRequest, invoice: Invoice, context: dict) -> HttpResponse:
    """The same service as the API's POST /api/invoices/<id>/pay, with the customer present."""
    try:
        after = payments.invoice_pay_with_saved_method(
            invoice_id=invoice.pk,
            payment_method_id=request.POST["payment_method"],
            off_session=False,
            actor=request.user,
        )
    except AuthenticationRequired:
        # The customer is here: take them to their bank's confirmation of this very charge.
        waiting = invoice.payments.filter(
            kind=PaymentKind.API, status=PaymentStatus.REQUIRES_ACTION
        ).first()
        if waiting is not None:
            with contextlib.suppress(DomainError, PaymentError):
                return _to_confirmation(request, invoice, waiting)
        context["error"] = _(
            "Your bank wants to confirm this payment. Use “Continue to payment” to confirm it."
        )
        return render(request, "billing/payments/pay.html", context, status=402)
    except DomainError as exc:
        context["error"] = exc.message
        return render(request, "billing/payments/pay.html", context, status=409)
    except PaymentError as exc:
        context["error"] = exc.message
        status = 503 if isinstance(exc, ProviderUnavailable) else 402
        return render(request, "billing/payments/pay.html", context, status=status)
    if after.status == InvoiceStatus.PAID:
        messages.success(
            request, _("Thank you: invoice %(number)s is paid.") % {"number": invoice.number}
        )
    elif after.payments.filter(status=PaymentStatus.PROCESSING).exists():
        messages.info(
            request,
            _(
                "Thank you. Your bank debit for invoice %(number)s was submitted: the invoice "
                "shows “Payment processing” until your bank confirms it, usually within a few "
                "business days."
            )
            % {"number": invoice.number},
        )
    else:
        # Less arrived than was due, or the payment waits for our staff: say what is still open.
        messages.info(
            request,
            _("Thank you. %(amount)s of invoice %(number)s is still open.")
            % {
                "amount": f"{l10n.amount(after.amount_remaining)} {after.currency}",
                "number": invoice.number,
            },
        )
    return _Redirect303(invoice.get_absolute_url())


def _result_page(request: HttpRequest, number: str, template: str) -> HttpResponse:
    try:
        invoice, token, is_member = _pay_context(request, number)
    except _LoginNeeded:
        return redirect(f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")
    context = _hosted_invoice_context(invoice, token, is_member=is_member)
    # Newest first (the model's order); a cancelled checkout says nothing about the money.
    payments_list = sorted(invoice.payments.all(), key=lambda p: (p.created_at, p.pk), reverse=True)
    latest = next((p for p in payments_list if p.status != PaymentStatus.CANCELLED), None)
    receipts = context["receipts"]
    return render(
        request,
        template,
        {
            **context,
            "latest": latest,
            "latest_receipt": receipts[-1] if receipts else None,
            "pay_url": _with_token(reverse("payments:invoice-pay", args=[invoice.number]), token),
        },
    )


def _receipt_context(request: HttpRequest, number: str, payment_id: int):
    """(receipt, context) for a member of the invoice's customer or the holder of its link."""
    invoice, token, is_member = _pay_context(request, number)
    receipt = receipt_or_404(invoice, payment_id)
    args = [invoice.number, payment_id]
    if is_member and not token:
        invoice_url = invoice.get_absolute_url()
    else:
        invoice_url = _with_token(reverse("payments:invoice-pay", args=[invoice.number]), token)
    return receipt, {
        "receipt": receipt,
        "invoice": invoice,
        "seller": settings.SELLER,
        "is_member": is_member,
        "invoice_url": invoice_url,
        "pdf_url": _with_token(reverse("payments:payment-receipt-pdf", args=args), token),
    }


@require_GET
def payment_receipt(request: HttpRequest, number: str, payment_id: int) -> HttpResponse:
    """The receipt of one payment: any member of the customer, or whoever has the pay link."""
    try:
        _receipt, context = _receipt_context(request, number, payment_id)
    except _LoginNeeded:
        return redirect(f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")
    return render(request, "billing/payments/receipt.html", context)


@require_GET
def payment_receipt_pdf(request: HttpRequest, number: str, payment_id: int) -> HttpResponse:
    try:
        receipt, _context = _receipt_context(request, number, payment_id)
    except _LoginNeeded:
        return redirect(f"{settings.LOGIN_URL}?{urlencode({'next': request.get_full_path()})}")
    try:
        content = receipt_pdf_bytes(receipt)
    except Exception:  # a clear message, never a 500 page
        logger.exception("receipt PDF of payment %s could not be produced", payment_id)
        return render(
            request,
            "billing/pdf/download_refused.html",
            {
                "message": _(
                    "The receipt PDF could not be produced just now. Please try again "
                    "in a minute; if it keeps failing, contact billing support."
                )
            },
            status=503,
        )
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'attachment; filename="{receipt.filename}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


def checkout_success(request: HttpRequest, number: str) -> HttpResponse:
    """Back from the checkout: "processing" until the provider's event confirms, then Paid."""
    return _result_page(request, number, "billing/payments/checkout_success.html")


def checkout_cancel(request: HttpRequest, number: str) -> HttpResponse:
    return _result_page(request, number, "billing/payments/checkout_cancel.html")


def _saved_charge_or_404(request: HttpRequest, number: str, payment_id: int) -> Payment:
    """A saved-method charge of the member's own invoice; another customer's answers 404."""
    invoice = invoice_for_customer_or_404(request.customer, number)
    payment = (
        Payment.objects.select_related("invoice")
        .filter(pk=payment_id, invoice=invoice, kind__in=payments.SAVED_METHOD_KINDS)
        .first()
    )
    if payment is None:
        raise Http404("No such payment.")
    return payment


@member_required(paying=True)
@require_http_methods(["POST"])
def payment_confirm(request: HttpRequest, number: str, payment_id: int) -> HttpResponse:
    """ "Confirm payment" for a charge that waits for 3-D Secure: 303 to where it is confirmed."""
    payment = _saved_charge_or_404(request, number, payment_id)
    try:
        return _to_confirmation(request, payment.invoice, payment)
    except (DomainError, PaymentError) as exc:
        messages.error(request, exc.message)
        return _Redirect303(payment.invoice.get_absolute_url())


def _to_confirmation(request: HttpRequest, invoice: Invoice, payment: Payment) -> HttpResponse:
    """303 to where the waiting charge is confirmed (or to the invoice, paid meanwhile)."""
    site = settings.SITE_URL
    back = reverse("payments:payment-confirmed", args=[invoice.number, payment.pk])
    url = payments.payment_confirm_start(
        payment_id=payment.pk,
        actor=request.user,
        return_url=f"{site}{back}",
        success_url=f"{site}{reverse('payments:checkout-success', args=[invoice.number])}",
        cancel_url=f"{site}{reverse('payments:checkout-cancel', args=[invoice.number])}",
        language=translation.get_language(),
    )
    if url is None:
        messages.success(
            request,
            _("Your payment for invoice %(number)s went through.") % {"number": invoice.number},
        )
        return _Redirect303(invoice.get_absolute_url())
    return _Redirect303(url)


@member_required(paying=True)
@require_http_methods(["GET"])
def payment_confirmed(request: HttpRequest, number: str, payment_id: int) -> HttpResponse:
    """Back from confirming a charge: what became of it, then the invoice."""
    payment = _saved_charge_or_404(request, number, payment_id)
    # Unreachable: the provider's event (or reconciliation) brings the answer instead.
    with contextlib.suppress(PaymentError):
        payment = payments.payment_refresh(payment_id=payment.pk, actor=request.user)
    if payment.status == PaymentStatus.SUCCEEDED:
        messages.success(
            request,
            _("Thank you: your payment for invoice %(number)s went through.") % {"number": number},
        )
    elif payment.status == PaymentStatus.REQUIRES_ACTION:
        messages.info(request, _("The payment is not confirmed yet; this page updates once it is."))
    elif payment.status != PaymentStatus.PROCESSING:
        messages.error(
            request,
            payment.failure_message or _("The payment was not confirmed. Nothing was charged."),
        )
    return redirect(payment.invoice.get_absolute_url())


@member_required(paying=True)
@require_http_methods(["GET", "POST"])
def payment_methods(request: HttpRequest) -> HttpResponse:
    customer = request.customer
    if request.method == "POST":
        action = request.POST.get("action", "")
        try:
            if action == "add":
                here = f"{settings.SITE_URL}{reverse('payments:payment-methods')}"
                url = payments.payment_method_setup_start(
                    customer_id=customer.pk,
                    actor=request.user,
                    success_url=f"{here}?added=1",
                    cancel_url=here,
                )
                started = request.session.get(SETUP_SESSION_KEY, [])
                request.session[SETUP_SESSION_KEY] = [*started, url][-SETUP_SESSION_KEEP:]
                return _Redirect303(url)
            method_id = int(request.POST.get("method", "0") or 0)
            if action == "default":
                payments.payment_method_set_default(
                    customer_id=customer.pk, method_id=method_id, actor=request.user
                )
                messages.success(request, _("Default payment method changed."))
            elif action == "remove":
                replacement = request.POST.get("replacement", "")
                payments.payment_method_remove(
                    customer_id=customer.pk,
                    method_id=method_id,
                    actor=request.user,
                    # "" (or "default"): contracts that used it go back to the default.
                    replacement_id=int(replacement) if replacement.isdigit() else None,
                )
                messages.success(request, _("Payment method removed."))
        except PaymentMethod.DoesNotExist:
            raise Http404("No such payment method.") from None
        except (DomainError, PaymentError) as exc:
            messages.error(request, exc.message)
        except ValueError:
            raise Http404("No such payment method.") from None
        return redirect("payments:payment-methods")
    if request.GET.get("added"):
        messages.info(
            request, _("Your payment method is being saved; it appears here once confirmed.")
        )
    return render(
        request,
        "billing/payments/methods.html",
        {"methods": list(methods_with_contracts(customer.pk))},
    )


@member_required(paying=True)
@require_GET
def payment_method_remove(request: HttpRequest, method_id: int) -> HttpResponse:
    """Remove asks first: this page says what removing the method changes and, when
    contracts are charged with it, which method charges them instead; then it posts."""
    methods = list(methods_with_contracts(request.customer.pk))
    method = next((m for m in methods if m.pk == method_id), None)
    if method is None:
        raise Http404("No such payment method.")
    others = [m for m in methods if m.pk != method_id]
    return render(
        request,
        "billing/payments/method_remove.html",
        {
            "method": method,
            "others": others,
            "contracts": [link.contract for link in method.contract_links.all()],
        },
    )


@member_required(paying=True)
@require_http_methods(["POST"])
def contract_payment_method(request: HttpRequest, contract_id: int) -> HttpResponse:
    """The contract page's "Payment method" form: one of the customer's methods, or the
    default ("" / "default"). Another customer's contract or method answers 404."""
    from contracts.models import LeaseContract

    chosen = request.POST.get("method", "")
    if chosen not in ("", "default") and not (chosen.isascii() and chosen.isdigit()):
        raise Http404("No such payment method.")
    try:
        method = payments.contract_payment_method_set(
            customer_id=request.customer.pk,
            contract_id=contract_id,
            method_id=int(chosen) if chosen.isdigit() else None,
            actor=request.user,
        )
    except (LeaseContract.DoesNotExist, PaymentMethod.DoesNotExist):
        raise Http404("No such contract or payment method.") from None
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        if method is None:
            messages.success(request, _("This contract is charged to your default method."))
        else:
            messages.success(
                request,
                _("This contract is charged to %(method)s.") % {"method": method.label},
            )
    return redirect("contracts:contract-detail", pk=contract_id)


# --- Sandbox (test mode) ------------------------------------------------------------


def _sandbox_or_404() -> None:
    if settings.PAYMENT_PROVIDER != "sandbox" or not sandbox_provider.sandbox_allowed():
        raise Http404("The test-mode checkout is switched off.")


@require_http_methods(["GET", "POST"])
def sandbox_checkout(request: HttpRequest, token: str) -> HttpResponse:
    """The TEST MODE stand-in for Stripe's hosted checkout page."""
    _sandbox_or_404()
    data = sandbox_provider.checkout_token_loads(token)
    payment = (
        Payment.objects.select_related("invoice", "invoice__customer")
        .filter(pk=(data or {}).get("p"), provider="sandbox")
        .first()
    )
    if payment is None:
        raise Http404("No such checkout.")
    if not request.user.is_authenticated:  # the payer came from the hosted page's link
        speak_document_language(request, payment.invoice)
    customer_id = payment.invoice.customer_id
    saved = PaymentMethod.objects.none()
    if _may_use_saved_methods(request, customer_id):
        saved = PaymentMethod.objects.filter(customer_id=customer_id, provider="sandbox")
        if payment.currency not in sandbox_provider.DEBIT_CURRENCIES:
            saved = saved.exclude(type__in=BANK_METHOD_TYPES)
    context = {
        "payment": payment,
        "invoice": payment.invoice,
        "seller": settings.SELLER,
        "cancel_url": data["c"],
        "cards": sandbox_provider.TEST_CARDS.values(),
        "ibans": sandbox_provider.TEST_IBANS.values()
        if payment.currency in sandbox_provider.DEBIT_CURRENCIES
        else (),
        "saved": saved,
        "error": "",
        "stage": "card",
        "rupee": payment.currency in sandbox_provider.UPI_CURRENCIES,
        "vpas": sandbox_provider.TEST_VPAS.values(),
        "banks": sandbox_provider.TEST_BANKS.items(),
    }
    if payment.status == PaymentStatus.SUCCEEDED:
        return redirect(data["s"])
    if payment.status == PaymentStatus.CANCELLED:
        context["error"] = _("This checkout has expired. Go back and start again.")
        context["stage"] = "closed"
        return render(request, "billing/payments/sandbox_checkout.html", context, status=410)
    if request.method == "GET":
        return render(request, "billing/payments/sandbox_checkout.html", context)

    action = request.POST.get("action", "pay")
    if action == "debit":
        iban = sandbox_provider.iban_for(request.POST.get("iban", ""))
        return _sandbox_debit(request, payment, context, success_url=data["s"], iban=iban)
    if action in ("upi", "netbanking"):
        return _sandbox_rupee(request, payment, context, action=action, success_url=data["s"])
    card = None
    if action in ("approve", "deny"):
        card = sandbox_provider.card_for_last4("3184")
    elif request.POST.get("saved"):
        chosen = request.POST["saved"]
        method = (
            saved.filter(pk=int(chosen)).first() if chosen.isascii() and chosen.isdigit() else None
        )
        if method is not None and method.is_bank:
            iban = sandbox_provider.iban_for_last4(method.last4)
            return _sandbox_debit(request, payment, context, success_url=data["s"], iban=iban)
        card = sandbox_provider.card_for_last4(method.last4) if method else None
    else:
        card = sandbox_provider.card_for_number(request.POST.get("card", ""))
    if card is None:
        context["error"] = _("Use one of the test cards listed below.")
        return render(request, "billing/payments/sandbox_checkout.html", context, status=400)

    if action == "deny":
        event = sandbox_provider.failure_event(
            payment.pk,
            code="authentication_failed",
            message="3-D Secure authentication failed. Nothing was charged.",
        )
    elif card.behaviour == "decline":
        event = sandbox_provider.failure_event(
            payment.pk, code="card_declined", message="Your card was declined."
        )
    elif card.behaviour == "3ds" and action != "approve":
        event = sandbox_provider.failure_event(
            payment.pk,
            code="authentication_required",
            message="Your bank asks you to confirm this payment.",
            action=True,
        )
        payments.provider_event_apply(event, actor="sandbox")
        context["stage"] = "3ds"
        return render(request, "billing/payments/sandbox_checkout.html", context)
    else:
        event = sandbox_provider.success_event(
            payment.pk, card, checkout_id=payment.provider_checkout_id or ""
        )
    payments.provider_event_apply(event, actor="sandbox")
    payment.refresh_from_db()
    if payment.status == PaymentStatus.SUCCEEDED:
        return _Redirect303(data["s"])
    context["error"] = payment.failure_message or _("The payment did not go through.")
    return render(request, "billing/payments/sandbox_checkout.html", context, status=402)


def _sandbox_debit(
    request: HttpRequest,
    payment: Payment,
    context: dict,
    *,
    success_url: str,
    iban: "sandbox_provider.TestIban | None",
) -> HttpResponse:
    """A SEPA Direct Debit from a test IBAN (typed, or a saved one): processing now, settled
    by the worker later."""
    if payment.currency not in sandbox_provider.DEBIT_CURRENCIES or iban is None:
        context["error"] = _("Use one of the test IBANs listed below (EUR invoices only).")
        return render(request, "billing/payments/sandbox_checkout.html", context, status=400)
    event = sandbox_provider.processing_event(payment.pk, iban, payment.provider_checkout_id or "")
    payments.provider_event_apply(event, actor="sandbox")
    payment.refresh_from_db()
    if payment.status != PaymentStatus.PROCESSING:
        context["error"] = _("This payment can no longer be made by debit.")
        return render(request, "billing/payments/sandbox_checkout.html", context, status=409)
    # Test mode only: a message the broker lost leaves the debit processing (the sandbox
    # has no reconciliation to settle it); pay the invoice again in another way.
    enqueue(
        sandbox_settle_debit, payment.pk, iban.iban, countdown=settings.SANDBOX_DEBIT_DELAY_SECONDS
    )
    return _Redirect303(success_url)


def _sandbox_rupee(
    request: HttpRequest, payment: Payment, context: dict, *, action: str, success_url: str
) -> HttpResponse:
    """UPI (a test VPA) or net banking (the test bank's success or failure button) for a
    rupee invoice: the outcome Razorpay's webhook would bring, through the same services."""
    if not context["rupee"]:
        context["error"] = _("UPI and net banking are offered for INR invoices only.")
        return render(request, "billing/payments/sandbox_checkout.html", context, status=400)
    if action == "upi":
        vpa = sandbox_provider.vpa_for(request.POST.get("vpa", ""))
        if vpa is None:
            context["error"] = _("Use one of the test UPI IDs listed below.")
            return render(request, "billing/payments/sandbox_checkout.html", context, status=400)
        brand, succeeds = sandbox_provider.UPI_BRAND, vpa.behaviour == "success"
    else:
        outcome = request.POST.get("outcome", "")
        if request.POST.get("bank", "") not in sandbox_provider.TEST_BANKS or outcome not in (
            "success",
            "failure",
        ):
            context["error"] = _("Choose a test bank, then Success or Failure.")
            return render(request, "billing/payments/sandbox_checkout.html", context, status=400)
        brand, succeeds = sandbox_provider.NETBANKING_BRAND, outcome == "success"
    event = sandbox_provider.rupee_outcome_event(
        payment.pk, brand=brand, succeeds=succeeds, checkout_id=payment.provider_checkout_id or ""
    )
    payments.provider_event_apply(event, actor="sandbox")
    payment.refresh_from_db()
    if payment.status == PaymentStatus.SUCCEEDED:
        return _Redirect303(success_url)
    context["error"] = payment.failure_message or _("The payment did not go through.")
    return render(request, "billing/payments/sandbox_checkout.html", context, status=402)


@require_http_methods(["GET", "POST"])
def sandbox_confirm(request: HttpRequest, token: str) -> HttpResponse:
    """TEST MODE: the bank's 3-D Secure page for a saved-card charge that waits for it."""
    _sandbox_or_404()
    data = sandbox_provider.confirm_token_loads(token)
    payment = (
        Payment.objects.select_related("invoice")
        .filter(pk=(data or {}).get("a"), provider="sandbox")
        .first()
    )
    if payment is None:
        raise Http404("No such payment.")
    context = {"payment": payment, "invoice": payment.invoice, "return_url": data["r"]}
    if payment.status != PaymentStatus.REQUIRES_ACTION:
        if payment.status in (PaymentStatus.SUCCEEDED, PaymentStatus.FAILED):
            return redirect(data["r"])
        context["error"] = _("This payment can no longer be confirmed. Nothing was charged.")
        return render(request, "billing/payments/sandbox_confirm.html", context, status=410)
    if request.method == "GET":
        return render(request, "billing/payments/sandbox_confirm.html", context)
    action = request.POST.get("action")
    if action == "approve":
        card = sandbox_provider.card_for_last4(payment.method_last4 or "3184")
        event = sandbox_provider.success_event(payment.pk, card)
    elif action != "deny":
        return render(request, "billing/payments/sandbox_confirm.html", context, status=400)
    else:
        event = sandbox_provider.failure_event(
            payment.pk,
            code="authentication_failed",
            message="3-D Secure authentication failed. Nothing was charged.",
        )
    payments.provider_event_apply(event, actor="sandbox")
    return _Redirect303(data["r"])


@require_http_methods(["GET", "POST"])
def sandbox_setup(request: HttpRequest, token: str) -> HttpResponse:
    """TEST MODE: save a test card (Stripe Checkout in setup mode)."""
    _sandbox_or_404()
    try:
        data = sandbox_provider.setup_token_loads(token)
    except sandbox_provider.SetupLinkExpired:
        return render(
            request,
            "billing/payments/sandbox_setup.html",
            {
                "expired": True,
                "error": _(
                    "This link to save a card has expired. Start again from Payment methods."
                ),
                "methods_url": reverse("payments:payment-methods"),
            },
            status=410,
        )
    # Only the session that started the setup, still a paying member of the customer.
    started = request.session.get(SETUP_SESSION_KEY, [])
    if not data or request.path not in started or not _may_use_saved_methods(request, data["cust"]):
        raise Http404("No such checkout.")
    context = {
        "cards": sandbox_provider.TEST_CARDS.values(),
        "ibans": sandbox_provider.TEST_IBANS.values(),
        "mandate_text": mandate_text_for(PaymentMethodType.SEPA_DEBIT),
        "cancel_url": data["c"],
        "error": "",
    }
    if request.method == "POST":
        if request.POST.get("action") == "iban":
            # A test IBAN with a SEPA Direct Debit mandate, accepted on this page.
            iban = sandbox_provider.iban_for(request.POST.get("iban", ""))
            if iban is None:
                context["error"] = _("Use one of the test IBANs listed below.")
            elif not request.POST.get("mandate"):
                context["error"] = _("Accept the direct debit mandate to save the account.")
            if context["error"]:
                return render(request, "billing/payments/sandbox_setup.html", context, status=400)
            event = sandbox_provider.attach_iban_event(data["cust"], iban)
        else:
            card = sandbox_provider.card_for_number(request.POST.get("card", ""))
            if card is None:
                context["error"] = _("Use one of the test cards listed below.")
                return render(request, "billing/payments/sandbox_setup.html", context, status=400)
            event = sandbox_provider.attach_event(data["cust"], card)
        payments.provider_event_apply(event, actor="sandbox")
        return _Redirect303(data["s"])
    return render(request, "billing/payments/sandbox_setup.html", context)
