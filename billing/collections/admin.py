"""Staff's queue of reported invoices (oldest first) and its decisions, each through a service."""

from django.contrib import admin
from django.db.models import QuerySet
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from core.admin import ReadOnlyAdmin, audit_trail, report
from core.errors import DomainError

from . import services
from .models import InvoiceReport


class ReportStateFilter(admin.SimpleListFilter):
    """The queue shows what is waiting for staff unless asked for the rest."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("waiting", "Waiting for staff"), ("resolved", "Resolved"), ("all", "All")]

    def choices(self, changelist):
        for lookup, title in self.lookup_choices:
            yield {
                "selected": (self.value() or "waiting") == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        value = self.value() or "waiting"
        if value == "waiting":
            return queryset.filter(resolved_at__isnull=True)
        if value == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


def _resolve_each(request, queryset: QuerySet, service, **kwargs) -> None:
    done, errors = [], []
    for item in queryset.select_related("invoice"):
        try:
            service(report_id=item.pk, actor=request.user, **kwargs)
        except DomainError as exc:
            errors.append(f"{item.invoice}: {exc.message}")
            continue
        done.append(str(item.invoice))
    report(request, done, errors)


@admin.register(InvoiceReport)
class InvoiceReportAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice_link",
        "customer",
        "reason",
        "status",
        "age",
        "created_at",
        "reported_by",
        "resolved_at",
    ]
    list_filter = [ReportStateFilter, "status", "reason"]
    search_fields = ["invoice__number", "invoice__customer__name", "description"]
    list_select_related = ["invoice__customer", "reported_by"]
    ordering = ["created_at", "pk"]
    actions = ["start_review", "reject", "correct"]
    show_full_result_count = False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in InvoiceReport._meta.fields] + ["age", "audit"]

    @admin.display(description="Invoice", ordering="invoice__number")
    def invoice_link(self, obj):
        url = reverse("admin:invoices_invoice_change", args=[obj.invoice_id])
        return format_html('<a href="{}">{}</a>', url, obj.invoice)

    @admin.display(description="Customer", ordering="invoice__customer__name")
    def customer(self, obj):
        return obj.invoice.customer

    @admin.display(description="Age", ordering="created_at")
    def age(self, obj):
        end = obj.resolved_at or timezone.now()
        days = (end - obj.created_at).days
        if days < 1:
            hours = int((end - obj.created_at).total_seconds() // 3600)
            return f"{hours} h"
        return f"{days} day{'s' if days != 1 else ''}"

    @admin.display(description="Audit trail")
    def audit(self, obj):
        return audit_trail(obj)

    @admin.action(
        description="Start the review (the customer already sees Under review)",
        permissions=["change"],
    )
    def start_review(self, request, queryset):
        _resolve_each(request, queryset, services.invoice_report_start_review)

    @admin.action(
        description="Reject: the invoice stands (message; fresh grace window)",
        permissions=["change"],
    )
    def reject(self, request, queryset):
        return self._decide(request, queryset, action="reject")

    @admin.action(
        description="Correct: resolved by a credit note (message)", permissions=["change"]
    )
    def correct(self, request, queryset):
        return self._decide(request, queryset, action="correct")

    def _decide(self, request, queryset, *, action: str):
        if request.POST.get("apply"):
            message = request.POST.get("message", "")
            if action == "reject":
                _resolve_each(request, queryset, services.invoice_report_reject, message=message)
            else:
                _resolve_each(
                    request,
                    queryset,
                    services.invoice_report_correct,
                    message=message,
                    credit_note_number=request.POST.get("credit_note_number", ""),
                )
            return None
        return TemplateResponse(
            request,
            "billing/collections/admin_resolve.html",
            {
                **self.admin_site.each_context(request),
                "title": "Reject reports" if action == "reject" else "Correct reported invoices",
                "reports": queryset.select_related("invoice__customer"),
                "action": action,
                "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )
