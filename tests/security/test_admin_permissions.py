"""The admin's permission matrix: every action of every ModelAdmin against who may run it.

Staff with only view_* permissions (and the "Support (read-only)" group) see no action
and a forged POST of any action changes nothing; "Billing staff" get every billing action;
refunds and cancellations need their own permissions. Read-only pages show no Save.
"""

import datetime
import re
from decimal import Decimal

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.core import mail
from django.test import RequestFactory
from django.urls import reverse
from django.utils import timezone

from billing.collections.services import invoice_report_open
from billing.invoices.credit_notes import credit_note_issue
from billing.invoices.models import Invoice, InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import (
    ContractPaymentMethod,
    Payment,
    PaymentKind,
    PaymentStatus,
    WebhookEvent,
)
from contracts import services as contracts
from contracts.models import AssignmentRequest, ContractStatus, LeaseContract, Lockout, LockoutKind
from core.models import AuditEntry
from tests.factories import PaymentMethodFactory, UserFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

BILLING_STAFF = "Billing staff"
SUPPORT = "Support (read-only)"
BILLING_APPS = {"core", "contracts", "invoices", "payments", "collections"}


def _superuser_request():
    request = RequestFactory().get("/admin/")
    request.user = UserFactory.build(is_staff=True, is_superuser=True)
    return request


def _all_actions() -> list[tuple[type, str]]:
    request = _superuser_request()
    return [
        (model, name)
        for model, model_admin in admin.site._registry.items()
        for name in model_admin.get_actions(request)
    ]


ACTIONS = _all_actions()


def _id(value) -> str:
    model, name = value
    return f"{model._meta.label}.{name}"


def _changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


@pytest.fixture
def records(db):
    """At least one row of every model an action acts on."""
    contract = make_contract(started_on=datetime.date(2026, 1, 1))
    open_invoice = make_invoice(contract)
    make_invoice(finalize=False)
    paid = make_invoice()
    payment = payments.payment_create(
        invoice_id=paid.pk, provider="sandbox", kind=PaymentKind.CHECKOUT, actor="t"
    )
    payments.payment_record_success(
        payment_id=payment.pk, actor="t", provider_payment_id=f"pi_sandbox_{payment.pk}"
    )
    PaymentMethodFactory(customer=contract.customer)
    contracts.assignment_create(
        contract=contract, block=contract.blocks.get(), reference="R-1", netname="N", actor="t"
    )
    WebhookEvent.objects.create(event_id="evt_1", type="x", body="{}")
    invoice_report_open(
        invoice_id=make_invoice().pk,
        reason="other",
        description="Not ours",
        reported_by=None,
        actor="t",
    )
    return {"contract": contract, "invoice": open_invoice, "payment": payment}


@pytest.fixture
def view_only(db):
    user = UserFactory(username="viewer-staff", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return user


def _in_group(name: str, username: str):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=name))
    return user


@pytest.fixture
def support(db):
    return _in_group(SUPPORT, "support-staff")


@pytest.fixture
def billing_staff(db):
    return _in_group(BILLING_STAFF, "billing-staff")


def _snapshot() -> dict:
    """Every row of every admin model (and the audit log): what a refused action must not touch."""
    state = {
        model._meta.label: sorted(map(repr, model._default_manager.order_by().values()))
        for model in admin.site._registry
    }
    state["audit"] = AuditEntry.objects.count()
    return state


def _offered(client, model) -> set[str]:
    page = client.get(_changelist(model))
    if page.status_code == 403:
        return set()
    assert page.status_code == 200
    form = page.context["action_form"]
    return {name for name, _ in form.fields["action"].choices if name} if form else set()


def test_the_groups_exist_with_their_permissions():
    billing = set(
        Group.objects.get(name=BILLING_STAFF).permissions.values_list("codename", flat=True)
    )
    support = set(Group.objects.get(name=SUPPORT).permissions.values_list("codename", flat=True))
    assert {"refund_payment", "cancel_contract", "change_invoice", "change_payment"} <= billing
    assert {"view_invoice", "view_payment", "view_leasecontract", "view_auditentry"} <= billing
    assert not {p for p in billing if p.startswith(("add_", "delete_"))}
    assert support and all(p.startswith("view_") for p in support)
    assert support <= billing


@pytest.mark.parametrize("entry", ACTIONS, ids=_id)
def test_every_action_asks_a_permission_beyond_view(entry):
    model, name = entry
    func = admin.site._registry[model].get_actions(_superuser_request())[name][0]
    needed = set(getattr(func, "allowed_permissions", ()))
    assert needed, f"{_id(entry)} runs for anybody who may open the list"
    assert "view" not in needed


@pytest.mark.parametrize("who", ["view_only", "support"])
@pytest.mark.parametrize("entry", ACTIONS, ids=_id)
def test_view_only_staff_cannot_run_any_action(client, records, request, who, entry):
    model, name = entry
    client.force_login(request.getfixturevalue(who))
    assert name not in _offered(client, model)
    ids = list(model._default_manager.values_list("pk", flat=True))
    before = _snapshot()
    mail.outbox.clear()
    response = client.post(
        _changelist(model),
        {"action": name, "_selected_action": ids, "apply": "1", "amount": "1.00", "index": 0},
    )
    # 302: no action selected; 200: a list without actions; 403: a list the user may not see.
    assert response.status_code in (200, 302, 403)
    assert _snapshot() == before
    assert mail.outbox == []


def test_billing_staff_get_every_billing_action_but_delete(client, records, billing_staff):
    client.force_login(billing_staff)
    for model in {m for m, _ in ACTIONS if m._meta.app_label in BILLING_APPS}:
        expected = {n for m, n in ACTIONS if m is model and n != "delete_selected"}
        assert _offered(client, model) == expected, model._meta.label


def test_billing_staff_void_refund_and_cancel(client, records, billing_staff):
    client.force_login(billing_staff)
    invoice, payment, contract = records["invoice"], records["payment"], records["contract"]
    client.post(_changelist(Invoice), {"action": "void", "_selected_action": [invoice.pk]})
    client.post(_changelist(Payment), {"action": "refund_full", "_selected_action": [payment.pk]})
    client.post(
        _changelist(LeaseContract),
        {"action": "cancel_contracts", "_selected_action": [contract.pk]},
    )
    invoice.refresh_from_db()
    payment.refresh_from_db()
    contract.refresh_from_db()
    assert invoice.status == InvoiceStatus.VOID
    assert payment.status == PaymentStatus.REFUNDED
    assert contract.status == ContractStatus.CANCELLED
    assert AuditEntry.objects.filter(actor_label="billing-staff").count() >= 3


@pytest.mark.parametrize(
    ("model", "action", "granted", "missing"),
    [
        (Payment, "refund_full", "change_payment", "refund_payment"),
        (Payment, "refund_partial", "change_payment", "refund_payment"),
        (Payment, "refund_held", "change_payment", "refund_payment"),
        (LeaseContract, "cancel_contracts", "change_leasecontract", "cancel_contract"),
    ],
)
def test_refunds_and_cancellations_need_their_own_permission(
    client, records, model, action, granted, missing
):
    user = UserFactory(username="clerk", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=[granted, f"view_{model._meta.model_name}"])
    )
    client.force_login(user)
    assert action not in _offered(client, model)
    before = _snapshot()
    client.post(
        _changelist(model),
        {"action": action, "_selected_action": list(model.objects.values_list("pk", flat=True))},
    )
    assert _snapshot() == before
    user.user_permissions.add(Permission.objects.get(codename=missing))
    client.force_login(type(user).objects.get(pk=user.pk))
    assert action in _offered(client, model)


def _change_pages(records):
    for model in admin.site._registry:
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            yield model, obj


@pytest.mark.parametrize("who", ["billing_staff", "support"])
def test_read_only_pages_have_no_save_button(client, records, request, who):
    """A page with nothing to edit offers no Save (and a POST to it is refused)."""
    client.force_login(request.getfixturevalue(who))
    checked = 0
    for model, obj in _change_pages(records):
        url = reverse(
            f"admin:{model._meta.app_label}_{model._meta.model_name}_change", args=[obj.pk]
        )
        page = client.get(url)
        if page.status_code == 403:
            continue
        assert page.status_code == 200, url
        adminform = page.context["adminform"]
        editable = set(adminform.form.fields) - set(adminform.readonly_fields)
        if editable:
            continue
        checked += 1
        assert 'name="_save"' not in page.content.decode(), url
        assert 'name="_continue"' not in page.content.decode(), url
    assert checked >= 8


def test_a_forged_save_of_a_read_only_invoice_is_refused(client, records, billing_staff):
    client.force_login(billing_staff)
    invoice = records["invoice"]
    before = _snapshot()
    response = client.post(
        reverse("admin:invoices_invoice_change", args=[invoice.pk]),
        {"status": "paid", "_save": "Save"},
    )
    assert response.status_code == 403
    assert _snapshot() == before


def test_billing_staff_may_still_extend_a_deadline(client, records, billing_staff):
    """The contract page keeps its one editable field (and its Save) for billing staff."""
    client.force_login(billing_staff)
    contract = records["contract"]
    page = client.get(reverse("admin:contracts_leasecontract_change", args=[contract.pk]))
    assert 'name="_save"' in page.content.decode()
    assert 'name="grace_extended_until"' in page.content.decode()


def test_assignment_history_is_read_only_for_billing_staff(client, records, billing_staff):
    client.force_login(billing_staff)
    assignment = AssignmentRequest.objects.get()
    page = client.get(reverse("admin:contracts_assignmentrequest_change", args=[assignment.pk]))
    assert page.status_code in (200, 403)
    assert 'name="_save"' not in page.content.decode()


@pytest.fixture
def every_model(records):
    """`records` plus a row of each admin model it leaves empty, so every change page opens."""
    contract, payment = records["contract"], records["payment"]
    block = contract.blocks.get()
    contracts.rdns_create(
        contract=contract, block=block, zone="0.2.192.in-addr.arpa", nameservers="ns1.x", actor="t"
    )
    Lockout.objects.create(
        kind=LockoutKind.LOGIN,
        identity="someone@example.com|192.0.2.1",
        failures=5,
        locked_until=timezone.now() + datetime.timedelta(minutes=15),
    )
    ContractPaymentMethod.objects.create(
        contract=contract,
        method=PaymentMethodFactory(customer=contract.customer, last4="4444", is_default=False),
    )
    payments.payment_record_refund(
        payment_id=payment.pk,
        amount=Decimal("1.00"),
        provider_refund_id="re_admin_1",
        actor="t",
        reason="requested_by_customer",
    )
    # Settled to the customer's credit: a credit note and the customer's balance.
    credit_note_issue(
        invoice_id=payment.invoice_id,
        reason="Returned",
        settle="credit",
        amount=Decimal("1.00"),
        actor="t",
    )
    return records


_SUBMIT_ROW = re.compile(r'<div class="submit-row">(.*?)</div>', re.S)


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_support_gets_no_save_or_delete_on_any_change_page(client, every_model, support, model):
    """The "Support (read-only)" group only looks: each change page it may open shows the
    Close link and no submit-row button (Save, Save and continue, Save as new) or Delete."""
    obj = model._default_manager.order_by("pk").first()
    assert obj is not None, f"no {model._meta.label} row: add one to every_model"
    opts = model._meta
    client.force_login(support)
    page = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk]))
    if not support.has_perm(f"{opts.app_label}.view_{opts.model_name}"):
        assert page.status_code == 403  # users and groups are not Support's to see
        return
    assert page.status_code == 200
    html = page.content.decode()
    rows = _SUBMIT_ROW.findall(html)
    assert rows, "the page has its submit row (with Close)"
    for row in rows:
        assert "<input" not in row, f"{opts.label}: {row.strip()}"
        assert "closelink" in row
    assert "deletelink" not in html and "/delete/" not in html, opts.label
