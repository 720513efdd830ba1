"""Staff issue credit notes and adjust the credit balance from admin, through the services."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from billing.invoices.models import CreditNote, CustomerBalance, InvoiceStatus
from tests.factories import UserFactory, make_invoice

pytestmark = pytest.mark.django_db
URL = "/admin/invoices/invoice/"


def _post(client, invoice, **data):
    return client.post(
        URL,
        {"action": "issue_credit_note", "_selected_action": [invoice.pk], **data},
        follow=True,
    )


def test_staff_credit_part_of_a_line(client, staff, customer):
    invoice = make_invoice(customer=customer)
    (line,) = invoice.lines.all()
    client.force_login(staff)
    form = _post(client, invoice)
    assert b"Credit note for invoice" in form.content
    key = form.context["form"].fields["key"].initial
    data = {"apply": "1", "key": key, "reason": "wrong amount", "settle": "credit"}
    done = _post(client, invoice, **data, **{f"part_{line.pk}": "50.00"})
    note = CreditNote.objects.get()
    assert f"Credit note {note.number} issued for 59.50 EUR" in done.content.decode()
    # The same form sent twice (a double click) issues one credit note.
    _post(client, invoice, **data, **{f"part_{line.pk}": "50.00"})
    assert CreditNote.objects.count() == 1
    invoice.refresh_from_db()
    assert invoice.amount_remaining == Decimal("59.50")


def test_too_much_is_refused_on_the_form_with_nothing_changed(client, staff, customer):
    invoice = make_invoice(customer=customer)
    client.force_login(staff)
    response = _post(
        client, invoice, apply="1", key="k1", reason="x", settle="refund", amount="500.00"
    )
    assert "Only 119.00 EUR of invoice" in response.content.decode()
    assert not CreditNote.objects.exists()
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.OPEN and invoice.amount_remaining == Decimal("119.00")


def test_a_draft_is_refused(client, staff, customer):
    draft = make_invoice(customer=customer, finalize=False)
    client.force_login(staff)
    response = _post(client, draft)
    assert "only an issued invoice can be credited" in response.content.decode()


def test_staff_without_change_permission_cannot_credit(client, customer):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    invoice = make_invoice(customer=customer)
    client.force_login(viewer)
    response = client.post(
        URL,
        {
            "action": "issue_credit_note",
            "_selected_action": [invoice.pk],
            "apply": "1",
            "key": "k",
            "reason": "x",
            "settle": "credit",
            "amount": "10.00",
        },
    )
    assert response.status_code in (200, 302, 403)
    assert not CreditNote.objects.exists()


def test_staff_adjust_the_credit_balance(client, staff, customer):
    client.force_login(staff)
    url = "/admin/contracts/customer/"
    base = {"action": "adjust_credit_balance", "_selected_action": [customer.pk], "apply": "1"}
    client.post(url, {**base, "currency": "EUR", "amount": "25.00", "note": "goodwill"})
    assert CustomerBalance.objects.get(customer=customer, currency="EUR").amount == 25
    refused = client.post(
        url, {**base, "currency": "EUR", "amount": "-30.00", "note": "oops"}, follow=True
    )
    assert "cannot be taken from it" in refused.content.decode()
    assert CustomerBalance.objects.get(customer=customer, currency="EUR").amount == 25
