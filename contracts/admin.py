import datetime

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Min, Q
from django.utils import timezone

from core.admin import ReadOnlyAdmin, ReadOnlyObjectPageMixin, audit_list, audit_trail, report
from core.errors import DomainError
from core.models import AuditEntry
from core.queue import enqueue

from . import services
from .auth import lockout_clear
from .forms import EmailListField
from .models import (
    AssignmentRequest,
    CancellationReason,
    ContractStatus,
    Customer,
    IPBlock,
    LeaseContract,
    Lockout,
    Membership,
    RdnsDelegation,
)


class MembershipInline(admin.TabularInline):
    """Saved through the membership services (CustomerAdmin.save_formset), so every
    person added, removed or given another role is on record with before and after."""

    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


class CustomerAdminForm(forms.ModelForm):
    billing_cc_emails = EmailListField(
        label="Further billing e-mails",
        required=False,
        help_text="One per line; each receives every invoice, reminder and receipt.",
    )

    class Meta:
        model = Customer
        fields = list(services.CUSTOMER_FIELDS)

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        current = {f: getattr(self.instance, f) for f in services.CUSTOMER_FIELDS}
        if self.instance.pk is None:
            current = {f: getattr(Customer(), f) for f in services.CUSTOMER_FIELDS}
        try:
            cleaned = services.customer_details_clean({**current, **data})
        except ValidationError as exc:
            for field_name, errors in exc.message_dict.items():
                self.add_error(field_name if field_name in self.fields else None, errors)
            return data
        return {**data, **{f: cleaned[f] for f in services.CUSTOMER_FIELDS}}

    def _post_clean(self):
        # The instance is written by the services, not by the form: skip the model's own
        # validation of a half-assigned instance (customer_details_clean did it).
        pass


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    form = CustomerAdminForm
    list_display = ["name", "email", "country", "tax_id", "vies_state", "default_currency"]
    list_filter = ["country", "is_business", "default_currency", "vies_valid"]
    search_fields = ["name", "email", "tax_id", "stripe_customer_id"]
    inlines = [MembershipInline]
    actions = ["check_vies"]
    vies_fields = [
        "vies_state",
        "vies_tax_id",
        "vies_checked_at",
        "vies_request_identifier",
        "vies_trader",
        "vies_error",
        "vies_error_at",
    ]
    readonly_fields = [*vies_fields, "stripe_customer_id", "created_at", "history"]
    fieldsets = [
        (None, {"fields": ["name", "is_business", "default_currency", "phone"]}),
        (
            "Billing address",
            {
                "fields": [
                    "address_line1",
                    "address_line2",
                    "postal_code",
                    "city",
                    "state",
                    "country",
                ]
            },
        ),
        ("Billing e-mails", {"fields": ["email", "billing_cc_emails"]}),
        (
            "Tax and references",
            {
                "fields": [
                    "tax_id",
                    "document_language",
                    "purchase_order_reference",
                    "buyer_reference",
                ]
            },
        ),
        ("VIES (EU VAT id check)", {"fields": vies_fields}),
        ("Record", {"fields": ["stripe_customer_id", "created_at", "history"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        if obj is None:  # nothing checked or recorded yet
            return self.fieldsets[:4]
        return self.fieldsets

    def save_model(self, request, obj, form, change):
        values = {f: form.cleaned_data[f] for f in services.CUSTOMER_FIELDS}
        if change:
            saved = services.customer_update(customer_id=obj.pk, changes=values, actor=request.user)
        else:
            saved = services.customer_create(values=values, actor=request.user)
            obj.pk = saved.pk
            obj._state.adding = False
        obj.refresh_from_db()

    def save_formset(self, request, form, formset, change):
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        formset.save(commit=False)
        customer = form.instance
        for membership in formset.deleted_objects:
            services.membership_remove(membership_id=membership.pk, actor=request.user)
        for membership, _fields in formset.changed_objects:
            services.membership_update(
                membership_id=membership.pk,
                user=membership.user,
                role=membership.role,
                actor=request.user,
            )
        for membership in formset.new_objects:
            services.membership_create(
                customer=customer, user=membership.user, role=membership.role, actor=request.user
            )

    @admin.display(description="VIES")
    def vies_state(self, obj):
        if obj.vies_valid is None or not obj.tax_id:
            answer = "not answered yet"
        elif obj.vies_tax_id != obj.tax_id:
            answer = f"answered for the former id {obj.vies_tax_id}"
        else:
            answer = "valid" if obj.vies_valid else "NOT valid"
            answer += f" ({obj.vies_checked_at:%Y-%m-%d})" if obj.vies_checked_at else ""
        if obj.vies_error:
            answer += f"; last check failed {obj.vies_error_at:%Y-%m-%d %H:%M}"
        return answer

    @admin.display(description="History (details, members, VIES)")
    def history(self, obj):
        return audit_list(
            AuditEntry.objects.filter(customer=obj, action__regex=r"^(customer|membership)\.")
        )

    @admin.action(description="Check the VAT ids in VIES now", permissions=["change"])
    def check_vies(self, request, queryset):
        from . import tasks  # tasks import services; loaded once Celery is configured

        queued = []
        for customer in queryset.exclude(tax_id=""):
            enqueue(tasks.vies_check, customer.pk)
            queued.append(customer.name)
        report(request, queued, [] if queued else ["None of them has a VAT id."])


class IPBlockForm(forms.ModelForm):
    class Meta:
        model = IPBlock
        fields = ["prefix", "registry"]

    def clean_prefix(self):
        prefix, first, last = services.ipblock_validate(
            prefix=self.cleaned_data["prefix"], exclude_pk=self.instance.pk
        )
        self.instance.first_address, self.instance.last_address = first, last
        return prefix


@admin.register(IPBlock)
class IPBlockAdmin(admin.ModelAdmin):
    form = IPBlockForm
    list_display = ["prefix", "registry", "status", "size"]
    list_filter = ["status", "registry"]
    search_fields = ["prefix"]
    readonly_fields = ["status", "audit"]

    def get_readonly_fields(self, request, obj=None):
        # A leased prefix is part of issued invoices; it never changes shape.
        return ["prefix", *self.readonly_fields] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        created = services.ipblock_create(
            prefix=form.cleaned_data["prefix"], registry=obj.registry, actor=request.user
        )
        obj.pk = created.pk

    @admin.display(description="Audit trail")
    def audit(self, obj):
        return audit_trail(obj)


_STAFF_EDITABLE = ("grace_extended_until", "buyer_reference", "purchase_order_reference")


class ContractCreateForm(forms.ModelForm):
    class Meta:
        model = LeaseContract
        fields = [
            "customer",
            "blocks",
            "price_per_block",
            "currency",
            "started_on",
            "billing_anchor_day",
        ]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            self.created = services.contract_create(
                customer=data["customer"],
                block_ids=[b.pk for b in data["blocks"]],
                price_per_block=data["price_per_block"],
                currency=data["currency"],
                started_on=data["started_on"],
                billing_anchor_day=data.get("billing_anchor_day"),
                actor=self.actor,
            )
        except DomainError as exc:
            raise ValidationError(exc.message) from None
        return data


class AssignmentInline(admin.TabularInline):
    model = AssignmentRequest
    extra = 0
    fields = ["block", "reference", "netname", "status", "removed_at"]
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class RdnsInline(AssignmentInline):
    model = RdnsDelegation
    fields = ["block", "zone", "nameservers", "status", "removed_at"]
    readonly_fields = fields


@admin.register(LeaseContract)
class LeaseContractAdmin(admin.ModelAdmin):
    list_display = [
        "reference",
        "customer",
        "status",
        "price_per_block",
        "currency",
        "next_billing_date",
        "grace_extended_until",
        "cancellation_date",
        "cancelled_at",
    ]
    list_filter = ["status", "currency", "cancellation_reason"]
    search_fields = ["customer__name", "blocks__prefix", "id"]
    list_select_related = ["customer"]
    autocomplete_fields = ["customer"]
    inlines = [AssignmentInline, RdnsInline]
    actions = ["cancel_contracts"]
    fields = [
        "customer",
        "block_list",
        "price_per_block",
        "currency",
        "billing_anchor_day",
        "status",
        "started_on",
        "next_billing_date",
        "grace_extended_until",
        "buyer_reference",
        "purchase_order_reference",
        "cancellation_date",
        "cancelled_at",
        "cancellation_reason",
        "audit",
    ]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            # A subclass per request: the acting user must not leak between requests.
            kwargs["form"] = type(
                "ContractCreateForm", (ContractCreateForm,), {"actor": request.user}
            )
            kwargs["fields"] = ContractCreateForm.Meta.fields
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        return self.fields if obj else ContractCreateForm.Meta.fields

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Money and status change only through services; staff may move the deadline and
        # set the references invoices carry.
        return [f for f in self.fields if f not in _STAFF_EDITABLE]

    def get_inlines(self, request, obj):
        return self.inlines if obj else []

    def save_model(self, request, obj, form, change):
        if not change:
            obj.pk = form.created.pk
            return
        if {"buyer_reference", "purchase_order_reference"} & set(form.changed_data):
            services.contract_set_references(
                contract_id=obj.pk,
                buyer_reference=obj.buyer_reference,
                purchase_order_reference=obj.purchase_order_reference,
                actor=request.user,
            )
        if "grace_extended_until" in form.changed_data and obj.grace_extended_until:
            try:
                services.contract_extend_grace(
                    contract_id=obj.pk, until=obj.grace_extended_until, actor=request.user
                )
            except DomainError as exc:
                messages.error(request, exc.message)

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(oldest_open_due=Min("invoices__due_date", filter=Q(invoices__status="open")))
        )

    @admin.display(description="Cancellation date")
    def cancellation_date(self, obj):
        """When an unpaid Open invoice cancels the contract: due date + grace, or the extension."""
        due = getattr(obj, "oldest_open_due", None)
        if obj.status == ContractStatus.CANCELLED or due is None:
            return "—"
        deadline = due + datetime.timedelta(days=settings.GRACE_PERIOD_DAYS)
        extended = obj.grace_extended_until
        return max(deadline, extended) if extended else deadline

    @admin.display(description="Blocks")
    def block_list(self, obj):
        return ", ".join(b.prefix for b in obj.blocks.all())

    @admin.display(description="Audit trail")
    def audit(self, obj):
        return audit_trail(obj)

    def has_cancel_permission(self, request):
        """Cancelling deactivates the customer's blocks: a permission of its own."""
        return request.user.has_perm("contracts.cancel_contract")

    @admin.action(
        description="Cancel the selected contracts (blocks deactivated)", permissions=["cancel"]
    )
    def cancel_contracts(self, request, queryset):
        done = []
        for contract in queryset.exclude(status=ContractStatus.CANCELLED):
            services.contract_cancel(
                contract_id=contract.pk, reason=CancellationReason.STAFF, actor=request.user
            )
            done.append(contract.reference)
        report(request, done, [] if done else ["No live contract was selected."])


class ResourceCreateForm(forms.ModelForm):
    """Creates the assignment or rDNS delegation through its service while validating,
    so the service's refusals (block not in the contract, contract cancelled) show on the
    form and nothing is saved."""

    actor = None
    create_service = None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        fields = {k: v for k, v in data.items() if k not in ("contract", "block")}
        try:
            self.created = self.create_service(
                contract=data["contract"], block=data["block"], actor=self.actor, **fields
            )
        except DomainError as exc:
            raise ValidationError(exc.message) from None
        return data


class ResourceAdmin(ReadOnlyObjectPageMixin, admin.ModelAdmin):
    """Staff add assignments and rDNS delegations; afterwards they are history, changed
    only by contract cancellation (which marks them removed)."""

    list_filter = ["status"]
    list_select_related = ["contract", "block"]
    readonly_fields = ["status", "removed_at", "created_at"]
    autocomplete_fields = ["block"]
    create_service = None

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            # A subclass per request: the acting user must not leak between requests.
            kwargs["form"] = type(
                "ResourceCreateForm",
                (ResourceCreateForm,),
                {"actor": request.user, "create_service": staticmethod(type(self).create_service)},
            )
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return self.fields if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if not change:
            obj.pk = form.created.pk


@admin.register(AssignmentRequest)
class AssignmentRequestAdmin(ResourceAdmin):
    list_display = ["reference", "netname", "block", "contract", "status", "removed_at"]
    search_fields = ["reference", "netname", "block__prefix"]
    fields = ["contract", "block", "reference", "netname", "status", "removed_at", "created_at"]
    create_service = staticmethod(services.assignment_create)


@admin.register(RdnsDelegation)
class RdnsDelegationAdmin(ResourceAdmin):
    list_display = ["zone", "nameservers", "block", "contract", "status", "removed_at"]
    search_fields = ["zone", "block__prefix"]
    fields = ["contract", "block", "zone", "nameservers", "status", "removed_at", "created_at"]
    create_service = staticmethod(services.rdns_create)


class LockoutActiveFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("active", "Locked now"), ("expired", "Expired")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(locked_until__gt=now)
        if self.value() == "expired":
            return queryset.filter(locked_until__lte=now)
        return queryset


@admin.register(Lockout)
class LockoutAdmin(ReadOnlyAdmin):
    """Who is locked out of log-in or the API right now; staff lift a lock here."""

    list_display = ["identity", "kind", "failures", "locked_until", "is_active", "created_at"]
    list_filter = [LockoutActiveFilter, "kind"]
    search_fields = ["identity"]
    actions = ["clear"]

    @admin.display(boolean=True, description="Locked now")
    def is_active(self, obj):
        return obj.locked_until > timezone.now()

    @admin.action(description="Lift the selected lockouts", permissions=["change"])
    def clear(self, request, queryset):
        done = [
            str(lockout)
            for lockout in queryset
            if lockout_clear(lockout_id=lockout.pk, actor=request.user)
        ]
        report(request, done, [] if done else ["Nothing to lift."])
