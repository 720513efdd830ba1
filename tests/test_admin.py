"""Staff admin: every model's pages open, and the actions go through the services."""

import datetime

import pytest
from django.contrib import admin
from django.urls import reverse

from billing.invoices.models import Invoice, InvoiceStatus
from contracts.models import BlockStatus, ContractStatus, IPBlock, LeaseContract
from core.models import AuditEntry
from tests.factories import CustomerFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


@pytest.mark.parametrize("model", list(admin.site._registry), ids=lambda m: m._meta.label)
def test_every_admin_changelist_and_add_page_opens(staff_client, model):
    make_invoice()
    opts = model._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    assert staff_client.get(url).status_code == 200
    assert staff_client.get(url, {"q": "x"}).status_code == 200
    add = staff_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    assert add.status_code in (200, 403)


def test_invoice_change_page_is_read_only_and_shows_the_audit_trail(staff_client):
    invoice = make_invoice()
    page = staff_client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "invoice.open" in body
    assert 'name="total"' not in body, "money fields are not editable"


def _action(client, model, action, ids):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    return client.post(url, {"action": action, "_selected_action": ids}, follow=True)


def test_invoice_actions_call_services_and_report_refusals(staff_client):
    draft = make_invoice(finalize=False)
    page = _action(staff_client, Invoice, "finalize", [draft.pk])
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.OPEN
    assert "Done:" in page.content.decode()

    page = _action(staff_client, Invoice, "finalize", [draft.pk])
    assert "cannot become open" in page.content.decode()

    _action(staff_client, Invoice, "record_bank_transfer", [draft.pk])
    page = _action(staff_client, Invoice, "void", [draft.pk])
    draft.refresh_from_db()
    assert draft.status == InvoiceStatus.PAID
    assert "refund them instead of voiding" in page.content.decode()
    assert AuditEntry.objects.filter(actor_label="staff", action="invoice.paid").exists()

    other = make_invoice()
    _action(staff_client, Invoice, "mark_uncollectible", [other.pk])
    other.refresh_from_db()
    assert other.status == InvoiceStatus.UNCOLLECTIBLE


def test_staff_create_blocks_and_contracts_through_the_services(staff_client):
    page = staff_client.post(
        reverse("admin:contracts_ipblock_add"), {"prefix": "203.0.113.7/24", "registry": "RIPE"}
    )
    assert "host bits set" in page.content.decode()
    assert not IPBlock.objects.exists()

    staff_client.post(
        reverse("admin:contracts_ipblock_add"), {"prefix": "203.0.113.0/24", "registry": "RIPE"}
    )
    block = IPBlock.objects.get()
    customer = CustomerFactory()
    form = {
        "customer": customer.pk,
        "blocks": [block.pk],
        "price_per_block": "-5",
        "currency": "EUR",
        "started_on": "2026-01-01",
        "billing_anchor_day": "1",
    }
    page = staff_client.post(reverse("admin:contracts_leasecontract_add"), form)
    assert "cannot be negative" in page.content.decode()
    assert not LeaseContract.objects.exists()

    form["price_per_block"] = "100"
    staff_client.post(reverse("admin:contracts_leasecontract_add"), form)
    contract = LeaseContract.objects.get()
    block.refresh_from_db()
    assert block.status == BlockStatus.LEASED
    assert AuditEntry.objects.filter(action="contract.created", actor_label="staff").exists()

    form["customer"] = CustomerFactory().pk
    form["price_per_block"] = "1"
    page = staff_client.post(reverse("admin:contracts_leasecontract_add"), form)
    assert "Not available for lease: 203.0.113.0/24" in page.content.decode()
    assert LeaseContract.objects.count() == 1

    _action(staff_client, LeaseContract, "cancel_contracts", [contract.pk])
    contract.refresh_from_db()
    assert contract.status == ContractStatus.CANCELLED


def test_run_billing_action_and_deadline_extension(staff_client):
    contract = make_contract(started_on=datetime.date.today())
    _action(staff_client, LeaseContract, "run_billing", [contract.pk])
    assert contract.invoices.count() == 1
    _action(staff_client, LeaseContract, "run_billing", [contract.pk])
    assert contract.invoices.count() == 1, "idempotent"

    until = datetime.date.today() + datetime.timedelta(days=10)
    url = reverse("admin:contracts_leasecontract_change", args=[contract.pk])
    staff_client.post(
        url,
        {
            "grace_extended_until": until.isoformat(),
            "assignment_requests-TOTAL_FORMS": 0,
            "assignment_requests-INITIAL_FORMS": 0,
            "rdns_delegations-TOTAL_FORMS": 0,
            "rdns_delegations-INITIAL_FORMS": 0,
        },
    )
    contract.refresh_from_db()
    assert contract.grace_extended_until == until
    assert AuditEntry.objects.filter(action="contract.grace_extended").exists()
    assert not AuditEntry.objects.filter(action="contract.references_changed").exists()

    staff_client.post(
        url,
        {
            "grace_extended_until": until.isoformat(),
            "buyer_reference": " 04011000-1234512345-06 ",
            "purchase_order_reference": "PO-1",
            "assignment_requests-TOTAL_FORMS": 0,
            "assignment_requests-INITIAL_FORMS": 0,
            "rdns_delegations-TOTAL_FORMS": 0,
            "rdns_delegations-INITIAL_FORMS": 0,
        },
    )
    contract.refresh_from_db()
    assert contract.buyer_reference == "04011000-1234512345-06"
    assert contract.purchase_order_reference == "PO-1"
    entry = AuditEntry.objects.get(action="contract.references_changed")
    assert entry.after["purchase_order_reference"] == "PO-1"


def test_staff_add_assignments_through_the_service(staff_client):
    contract = make_contract()
    stranger = make_contract().blocks.get()
    url = reverse("admin:contracts_assignmentrequest_add")
    form = {"contract": contract.pk, "block": stranger.pk, "reference": "R-1", "netname": "N"}
    page = staff_client.post(url, form)
    assert "is not part of" in page.content.decode()
    assert not contract.assignment_requests.exists()

    form["block"] = contract.blocks.get().pk
    assert staff_client.post(url, form).status_code == 302
    created = contract.assignment_requests.get()
    assert AuditEntry.objects.filter(
        action="assignmentrequest.created", object_id=str(created.pk), actor_label="staff"
    ).exists()
    change = staff_client.get(
        reverse("admin:contracts_assignmentrequest_change", args=[created.pk])
    )
    assert 'name="reference"' not in change.content.decode(), "history is read-only"


def test_read_only_invoice_and_payment_pages_offer_no_save_button(staff_client):
    from tests.billing.invoices.pages_support import pay

    invoice = pay(make_invoice())
    for url in (
        reverse("admin:invoices_invoice_change", args=[invoice.pk]),
        reverse("admin:payments_payment_change", args=[invoice.payments.get().pk]),
    ):
        body = staff_client.get(url).content.decode()
        assert 'name="_save"' not in body and 'name="_continue"' not in body, url
        assert 'name="_addanother"' not in body, url


def test_the_audit_trail_reads_as_name_before_after_not_python_dicts(staff_client):
    from tests.billing.invoices.pages_support import pay

    invoice = pay(make_invoice())
    body = staff_client.get(
        reverse("admin:invoices_invoice_change", args=[invoice.pk])
    ).content.decode()
    assert "{&#x27;" not in body and "{'" not in body, "no raw dicts"
    assert "status: open → paid" in body
    assert f"amount_paid: 0.00 → {invoice.total}" in body


def test_the_paid_entry_records_the_amount_paid_before_and_after_the_payment():
    from tests.billing.invoices.pages_support import pay

    invoice = pay(make_invoice())
    entry = AuditEntry.objects.get(action="invoice.paid", object_id=str(invoice.pk))
    assert entry.before["status"] == "open" and entry.before["amount_paid"] == "0.00"
    assert entry.after["amount_paid"] == str(invoice.total)
    assert entry.after["status"] == "paid"
    assert entry.after["method"] == "Visa •••• 4242"
