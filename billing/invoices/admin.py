import uuid
from decimal import Decimal

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.utils import timezone

from contracts.admin import CustomerAdmin, LeaseContractAdmin
from contracts.models import Customer, LeaseContract
from core.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    ReadOnlyObjectPageMixin,
    audit_trail,
    report,
)
from core.errors import DomainError

from . import services
from .balance import customer_balance_adjust
from .credit_notes import CREDITABLE_STATUSES, CreditLine, credit_note_issue
from .models import (
    CreditNote,
    CreditNoteLine,
    CreditNoteSettlement,
    CreditNoteTax,
    CustomerBalance,
    CustomerBalanceTransaction,
    Invoice,
    InvoiceLine,
    InvoiceNumberCounter,
    InvoiceTax,
    TaxRate,
)
from .services import contract_bill_due_periods


class InvoiceLineInline(ReadOnlyInline):
    model = InvoiceLine
    fields = [
        "description",
        "block",
        "period_start",
        "period_end",
        "quantity",
        "unit_price",
        "amount",
        "tax_rate",
    ]


class InvoiceTaxInline(ReadOnlyInline):
    model = InvoiceTax
    fields = ["name", "rate", "taxable_amount", "amount", "note"]


def run_on_each(request, queryset: QuerySet, service, **kwargs) -> None:
    done, errors = [], []
    for invoice in queryset:
        try:
            service(invoice_id=invoice.pk, actor=request.user, **kwargs)
        except DomainError as exc:
            errors.append(f"{invoice}: {exc.message}")
            continue
        done.append(str(Invoice.objects.get(pk=invoice.pk)))
    report(request, done, errors)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = [
        "__str__",
        "customer",
        "status",
        "issue_date",
        "due_date",
        "total",
        "amount_paid",
        "currency",
    ]
    list_filter = ["status", "currency", "billing_reason", "issue_date"]
    search_fields = ["number", "customer__name", "lines__block__prefix"]
    list_select_related = ["customer"]
    date_hierarchy = "issue_date"
    inlines = [InvoiceLineInline, InvoiceTaxInline]
    actions = ["finalize", "void", "mark_uncollectible", "issue_credit_note"]
    readonly_fields = ["audit"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in Invoice._meta.fields] + [
            "amount_remaining",
            "cancellation_date",
            "audit",
        ]

    @admin.display(description="Audit trail")
    def audit(self, obj):
        return audit_trail(obj)

    @admin.action(description="Finalise (number, taxes, open)", permissions=["change"])
    def finalize(self, request, queryset):
        run_on_each(request, queryset, services.invoice_finalize)

    @admin.action(description="Void (do not pay)", permissions=["change"])
    def void(self, request, queryset):
        run_on_each(request, queryset, services.invoice_void, reason="voided by staff")

    @admin.action(description="Mark uncollectible (write off)", permissions=["change"])
    def mark_uncollectible(self, request, queryset):
        run_on_each(
            request, queryset, services.invoice_mark_uncollectible, reason="written off by staff"
        )

    @admin.action(description="Issue a credit note (one invoice)", permissions=["change"])
    def issue_credit_note(self, request, queryset):
        """Staff credit lines, parts of lines or a free amount through credit_note_issue."""
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one invoice to credit.", messages.ERROR)
            return None
        invoice = queryset.select_related("customer").get()
        if invoice.status not in CREDITABLE_STATUSES:
            self.message_user(
                request,
                f"Invoice {invoice} is {invoice.get_status_display().lower()}; only an issued "
                "invoice can be credited.",
                messages.ERROR,
            )
            return None
        lines = list(invoice.lines.all())
        form = CreditNoteForm(request.POST if request.POST.get("apply") else None, lines=lines)
        if form.is_bound and form.is_valid():
            try:
                note = credit_note_issue(
                    invoice_id=invoice.pk,
                    lines=form.credit_lines(),
                    amount=form.cleaned_data["amount"],
                    reason=form.cleaned_data["reason"],
                    settle=form.cleaned_data["settle"],
                    idempotency_key=f"admin-{form.cleaned_data['key']}",
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Credit note {note.number} issued for {note.total} {note.currency} "
                    f"({note.pre_payment_amount} off the amount due, {note.refund_amount} "
                    f"refunded, {note.credit_amount} to the customer's credit).",
                    messages.SUCCESS,
                )
                return None
        return TemplateResponse(
            request,
            "billing/admin/action_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Credit note for invoice {invoice}",
                "intro": (
                    f"Total {invoice.total} {invoice.currency}; {invoice.amount_creditable} "
                    f"{invoice.currency} can still be credited, {invoice.amount_remaining} "
                    f"{invoice.currency} is still due. Credit whole lines, part of a line "
                    "(net), or a free amount (tax included); tax is reversed per rate as the "
                    "invoice applied it."
                ),
                "form": form,
                "selected": [invoice.pk],
                "action": "issue_credit_note",
                "submit_label": "Issue credit note",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


class CreditNoteForm(forms.Form):
    reason = forms.CharField(max_length=500, help_text="Printed on the credit note.")
    settle = forms.ChoiceField(
        choices=CreditNoteSettlement.choices,
        widget=forms.RadioSelect,
        initial=CreditNoteSettlement.CREDIT,
        label="Money already paid goes to",
    )
    amount = forms.DecimalField(
        required=False,
        min_value=Decimal("0.01"),
        decimal_places=2,
        label="Or a free amount (gross)",
    )
    key = forms.CharField(widget=forms.HiddenInput)

    def __init__(self, *args, lines: list[InvoiceLine], **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.invoice_lines = lines
        self.fields["key"].initial = uuid.uuid4().hex
        for line in lines:
            self.fields[f"whole_{line.pk}"] = forms.BooleanField(
                required=False, label=f"Whole line: {line.description} ({line.amount})"
            )
            self.fields[f"part_{line.pk}"] = forms.DecimalField(
                required=False,
                min_value=Decimal("0.01"),
                decimal_places=2,
                label="or part of it (net)",
            )

    def credit_lines(self) -> list[CreditLine]:
        out = []
        for line in self.invoice_lines:
            if self.cleaned_data.get(f"whole_{line.pk}"):
                out.append(CreditLine(line.pk))
            elif self.cleaned_data.get(f"part_{line.pk}"):
                out.append(CreditLine(line.pk, self.cleaned_data[f"part_{line.pk}"]))
        return out

    def clean(self):
        data = super().clean()
        for line in self.invoice_lines:
            if data.get(f"whole_{line.pk}") and data.get(f"part_{line.pk}"):
                self.add_error(f"part_{line.pk}", "Credit the whole line or a part, not both.")
        return data


class CreditNoteLineInline(ReadOnlyInline):
    model = CreditNoteLine
    fields = ["description", "invoice_line", "amount", "tax_rate"]


class CreditNoteTaxInline(ReadOnlyInline):
    model = CreditNoteTax
    fields = ["name", "rate", "taxable_amount", "amount", "note"]


@admin.register(CreditNote)
class CreditNoteAdmin(ReadOnlyAdmin):
    """Issued from the invoice list (action "Issue a credit note"); never edited."""

    list_display = [
        "number",
        "invoice",
        "customer",
        "issue_date",
        "total",
        "pre_payment_amount",
        "refund_amount",
        "credit_amount",
        "currency",
    ]
    list_filter = ["settlement", "currency", "issue_date"]
    search_fields = ["number", "invoice__number", "customer__name"]
    list_select_related = ["invoice", "customer"]
    inlines = [CreditNoteLineInline, CreditNoteTaxInline]
    readonly_fields = ["audit"]

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in CreditNote._meta.fields] + ["audit"]

    @admin.display(description="Audit trail")
    def audit(self, obj):
        return audit_trail(obj)


class BalanceTransactionInline(ReadOnlyInline):
    model = CustomerBalanceTransaction
    fields = ["created_at", "kind", "amount", "ending_balance", "invoice", "credit_note", "note"]
    ordering = ["-created_at", "-id"]


@admin.register(CustomerBalance)
class CustomerBalanceAdmin(ReadOnlyAdmin):
    """Credit per customer and currency; adjusted from the customer's page (an action)."""

    list_display = ["customer", "currency", "amount", "updated_at"]
    list_filter = ["currency"]
    search_fields = ["customer__name"]
    list_select_related = ["customer"]
    inlines = [BalanceTransactionInline]

    def get_readonly_fields(self, request, obj=None):
        return ["customer", "currency", "amount", "updated_at"]


@admin.register(TaxRate)
class TaxRateAdmin(ReadOnlyObjectPageMixin, admin.ModelAdmin):
    list_display = ["country", "name", "rate", "valid_from"]
    list_filter = ["name"]
    search_fields = ["country"]

    def get_readonly_fields(self, request, obj=None):
        # A rate that invoices were issued with is history: add a new row instead.
        return ["country", "name", "rate", "valid_from"] if obj else []


@admin.register(InvoiceNumberCounter)
class InvoiceNumberCounterAdmin(ReadOnlyAdmin):
    list_display = ["series", "year", "last_number"]


# The customer page gains the credit balance adjustment here: contracts never imports billing.
admin.site.unregister(Customer)


class BalanceAdjustForm(forms.Form):
    currency = forms.ChoiceField(choices=[(c, c) for c in settings.SUPPORTED_CURRENCIES])
    amount = forms.DecimalField(
        decimal_places=2, help_text="Positive adds credit, negative takes it away."
    )
    note = forms.CharField(max_length=300, help_text="Why (kept in the ledger).")


@admin.register(Customer)
class CustomerBillingAdmin(CustomerAdmin):
    actions = [*(CustomerAdmin.actions or []), "adjust_credit_balance"]

    @admin.action(description="Adjust credit balance (one customer)", permissions=["change"])
    def adjust_credit_balance(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one customer.", messages.ERROR)
            return None
        customer = queryset.get()
        form = BalanceAdjustForm(request.POST if request.POST.get("apply") else None)
        if form.is_bound and form.is_valid():
            try:
                entry = customer_balance_adjust(
                    customer_id=customer.pk,
                    currency=form.cleaned_data["currency"],
                    amount=form.cleaned_data["amount"],
                    note=form.cleaned_data["note"],
                    actor=request.user,
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"{customer}: credit balance now {entry.ending_balance} "
                    f"{entry.balance.currency}.",
                    messages.SUCCESS,
                )
                return None
        balances = CustomerBalance.objects.filter(customer=customer)
        return TemplateResponse(
            request,
            "billing/admin/action_form.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Adjust the credit balance of {customer}",
                "items": [f"{b.amount} {b.currency}" for b in balances] or ["No credit yet."],
                "form": form,
                "selected": [customer.pk],
                "action": "adjust_credit_balance",
                "submit_label": "Adjust",
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
            },
        )


# The contract page gains the billing action here: contracts never imports billing.
admin.site.unregister(LeaseContract)


@admin.register(LeaseContract)
class LeaseContractBillingAdmin(LeaseContractAdmin):
    actions = [*LeaseContractAdmin.actions, "run_billing"]

    @admin.action(
        description="Run billing for the selected contracts (due periods only)",
        permissions=["change"],
    )
    def run_billing(self, request, queryset):
        done, errors = [], []
        for contract in queryset:
            try:
                issued = contract_bill_due_periods(
                    contract_id=contract.pk, today=timezone.localdate(), actor=request.user
                )
            except DomainError as exc:
                errors.append(f"{contract.reference}: {exc.message}")
                continue
            done.append(f"{contract.reference} ({len(issued)} invoice(s))")
        report(request, done, errors)
