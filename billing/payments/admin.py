import datetime
from decimal import Decimal, InvalidOperation

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.utils import timezone

from billing.invoices.admin import CustomerBillingAdmin, InvoiceAdmin, run_on_each
from billing.invoices.models import Invoice
from contracts.models import Customer
from core.admin import ReadOnlyAdmin, ReadOnlyInline, audit_trail, report
from core.errors import DomainError

from . import services, webhooks
from .models import (
    ContractPaymentMethod,
    Payment,
    PaymentMethod,
    PaymentStatus,
    Refund,
    WebhookEvent,
    WebhookEventStatus,
)
from .providers import PaymentError, provider_for_invoice
from .statements import statement_email


class PaymentInline(ReadOnlyInline):
    model = Payment
    fields = [
        "kind",
        "provider",
        "status",
        "amount",
        "amount_received",
        "currency_received",
        "amount_refunded",
        "method_brand",
        "method_last4",
        "failure_message",
        "created_at",
    ]
    show_change_link = True


def _refund_each(request, queryset: QuerySet, *, amount, reason: str) -> None:
    """Refunds go to the provider; the webhook (or the sandbox at once) confirms them."""
    done, errors = [], []
    for payment in queryset:
        try:
            refund = services.payment_refund(
                payment_id=payment.pk, amount=amount, actor=request.user, reason=reason
            )
        except (DomainError, PaymentError) as exc:
            errors.append(f"Payment {payment.pk}: {exc.message}")
            continue
        done.append(f"Payment {payment.pk}: {refund.amount} ({refund.get_status_display()})")
    report(request, done, errors)


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "invoice",
        "kind",
        "provider",
        "status",
        "amount",
        "currency",
        "amount_received",
        "currency_received",
        "amount_refunded",
        "held_reason",
        "created_at",
    ]
    list_filter = ["status", "kind", "provider", "is_duplicate"]
    search_fields = [
        "invoice__number",
        "provider_payment_id",
        "provider_checkout_id",
        "provider_charge_id",
    ]
    list_select_related = ["invoice"]
    readonly_fields = ["audit"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Payment._meta.fields] + ["audit"]

    actions = ["refund_full", "refund_partial", "refund_held"]

    def has_refund_permission(self, request):
        """Money leaves through the provider: a permission of its own (Billing staff)."""
        return request.user.has_perm("payments.refund_payment")

    @admin.action(description="Refund held payments to the payer", permissions=["refund"])
    def refund_held(self, request, queryset):
        held = queryset.filter(status=PaymentStatus.HELD)
        skipped = [f"Payment {p.pk}: not held" for p in queryset.exclude(pk__in=held)]
        if skipped:
            report(request, [], skipped)
        _refund_each(request, held, amount=None, reason="held payment returned by staff")

    @admin.action(description="Refund in full through the provider", permissions=["refund"])
    def refund_full(self, request, queryset):
        _refund_each(request, queryset, amount=None, reason="refunded by staff")

    @admin.action(
        description="Refund part of the payment through the provider", permissions=["refund"]
    )
    def refund_partial(self, request, queryset):
        if request.POST.get("apply"):
            try:
                amount = Decimal(request.POST.get("amount", ""))
            except InvalidOperation:
                self.message_user(request, "Enter an amount such as 12.50.", level="error")
                return None
            reason = request.POST.get("reason", "") or "partial refund by staff"
            _refund_each(request, queryset, amount=amount, reason=reason)
            return None
        return TemplateResponse(
            request,
            "billing/payments/admin_refund.html",
            {
                **self.admin_site.each_context(request),
                "title": "Partial refund",
                "payments": queryset,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )

    @admin.display(description="Audit trail")
    def audit(self, obj):
        return audit_trail(obj)


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = [
        "pk",
        "payment",
        "amount",
        "status",
        "reason",
        "credit_note",
        "failure_reason",
        "created_at",
    ]
    list_filter = ["status"]
    search_fields = ["provider_refund_id", "payment__invoice__number", "credit_note__number"]


@admin.register(PaymentMethod)
class PaymentMethodAdmin(ReadOnlyAdmin):
    list_display = [
        "customer",
        "type",
        "brand",
        "bank_name",
        "last4",
        "exp_month",
        "exp_year",
        "mandate_reference",
        "is_default",
        "provider",
    ]
    list_filter = ["provider", "type", "brand", "is_default"]
    search_fields = ["customer__name", "provider_id", "last4", "mandate_reference"]


@admin.register(ContractPaymentMethod)
class ContractPaymentMethodAdmin(ReadOnlyAdmin):
    """Which contracts name their own method (the customer changes it on the contract page)."""

    list_display = ["contract", "method", "updated_at"]
    search_fields = ["contract__customer__name", "method__provider_id"]
    list_select_related = ["contract", "method"]


class StuckFilter(admin.SimpleListFilter):
    """Events still waiting to be applied (received or failed) for longer than an age, and
    those the sweep gave up on: what staff look at when a payment did not show up."""

    title = "stuck"
    parameter_name = "stuck"
    AGES = {
        "5m": datetime.timedelta(minutes=5),
        "1h": datetime.timedelta(hours=1),
        "1d": datetime.timedelta(days=1),
    }

    def lookups(self, request, model_admin):
        return [
            ("5m", "unapplied for over 5 minutes"),
            ("1h", "unapplied for over an hour"),
            ("1d", "unapplied for over a day"),
            ("gave_up", "failed, no more retries"),
        ]

    def queryset(self, request, queryset):
        if self.value() == "gave_up":
            return queryset.filter(
                status=WebhookEventStatus.FAILED, attempts__gte=webhooks.MAX_ATTEMPTS
            )
        if self.value() in self.AGES:
            return queryset.filter(
                status__in=webhooks.UNFINISHED,
                received_at__lt=timezone.now() - self.AGES[self.value()],
            )
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(ReadOnlyAdmin):
    """The raw provider event log: what arrived, when, and what became of it."""

    list_display = [
        "received_at",
        "provider",
        "type",
        "event_id",
        "object_id",
        "status",
        "attempts",
        "attempted_at",
        "note",
    ]
    list_filter = [StuckFilter, "status", "provider", "type"]
    search_fields = ["event_id", "object_id", "note"]
    date_hierarchy = "received_at"

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in WebhookEvent._meta.fields]


# The invoice page gains its payments and the bank-transfer action here: invoices never
# imports payments.
admin.site.unregister(Invoice)


@admin.register(Invoice)
class InvoicePaymentsAdmin(InvoiceAdmin):
    inlines = [*InvoiceAdmin.inlines, PaymentInline]
    actions = [*InvoiceAdmin.actions, "record_bank_transfer"]
    list_display = [*InvoiceAdmin.list_display, "pay_online_via"]

    def get_readonly_fields(self, request, obj=None):
        return [*super().get_readonly_fields(request, obj), "pay_online_via"]

    @admin.display(description="Pay online via")
    def pay_online_via(self, obj):
        """The provider Pay online sends this invoice to now (providers.provider_for_invoice:
        its currency and the settings); its earlier payments show their own."""
        return provider_for_invoice(obj)

    @admin.action(
        description="Record a bank transfer for the full amount remaining", permissions=["change"]
    )
    def record_bank_transfer(self, request, queryset):
        run_on_each(
            request, queryset, services.invoice_record_out_of_band_payment, note="bank transfer"
        )


# The customer page gains "e-mail a statement" here (the statement reads payments).
admin.site.unregister(Customer)


def _year_start() -> datetime.date:
    return timezone.localdate().replace(month=1, day=1)


class StatementEmailForm(forms.Form):
    currency = forms.ChoiceField(choices=[(c, c) for c in settings.SUPPORTED_CURRENCIES])
    start = forms.DateField(initial=_year_start, help_text="YYYY-MM-DD")
    end = forms.DateField(initial=timezone.localdate, help_text="YYYY-MM-DD")


@admin.register(Customer)
class CustomerStatementAdmin(CustomerBillingAdmin):
    actions = [*CustomerBillingAdmin.actions, "email_statement"]

    @admin.action(description="E-mail a statement of account", permissions=["change"])
    def email_statement(self, request, queryset):
        form = StatementEmailForm(request.POST if request.POST.get("apply") else None)
        if form.is_bound and form.is_valid():
            done, errors = [], []
            for customer in queryset:
                try:
                    recipients = statement_email(
                        customer_id=customer.pk,
                        currency=form.cleaned_data["currency"],
                        start=form.cleaned_data["start"],
                        end=form.cleaned_data["end"],
                        actor=request.user,
                    )
                except DomainError as exc:
                    errors.append(f"{customer}: {exc.message}")
                    continue
                done.append(f"{customer} ({', '.join(recipients)})")
            report(request, done, errors)
            if not errors:
                return None
            if not done:
                self.message_user(request, "No statement was sent.", messages.WARNING)
            return None
        return TemplateResponse(
            request,
            "billing/admin/action_form.html",
            {
                **self.admin_site.each_context(request),
                "title": "E-mail a statement of account",
                "intro": "PDF and CSV go to each customer's billing e-mail and billing members.",
                "items": [str(c) for c in queryset],
                "form": form,
                "selected": [c.pk for c in queryset],
                "action": "email_statement",
                "submit_label": "Send",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )
