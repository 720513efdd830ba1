from django.contrib import admin
from django.db.models import QuerySet
from django.utils import timezone

from contracts.admin import LeaseContractAdmin
from contracts.models import LeaseContract
from core.admin import (
    ReadOnlyAdmin,
    ReadOnlyInline,
    ReadOnlyObjectPageMixin,
    audit_trail,
    report,
)
from core.errors import DomainError

from . import services
from .models import Invoice, InvoiceLine, InvoiceNumberCounter, InvoiceTax, TaxRate
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
    actions = ["finalize", "void", "mark_uncollectible"]
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
