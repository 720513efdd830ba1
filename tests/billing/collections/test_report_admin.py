"""Staff's queue of reported invoices: oldest first with age, decisions through the
services, and only for staff allowed to change reports."""

import datetime

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.core import mail

from billing.collections import services
from billing.collections.models import InvoiceReport, ReportStatus
from contracts.models import Role
from core.models import AuditEntry
from tests.factories import MembershipFactory, UserFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

QUEUE = "/admin/collections/invoicereport/"


@pytest.fixture
def reports(customer):
    MembershipFactory(customer=customer, role=Role.OWNER, user__email="owner@example.com")
    made = []
    for day in (5, 2):
        moment = datetime.datetime(2026, 1, day, 9, tzinfo=datetime.UTC)
        with time_machine.travel(moment, tick=False):
            invoice = make_invoice(make_contract(customer))
            made.append(
                services.invoice_report_open(
                    invoice_id=invoice.pk,
                    reason="wrong_amount",
                    description=f"Report of day {day}",
                    reported_by=None,
                    actor="t",
                )
            )
    return made


def _post(client, action, ids, **extra):
    return client.post(QUEUE, {"action": action, "_selected_action": ids, **extra}, follow=True)


def test_the_queue_lists_waiting_reports_oldest_first_with_their_age(client, staff, reports):
    client.force_login(staff)
    with time_machine.travel(datetime.datetime(2026, 1, 12, 9, tzinfo=datetime.UTC)):
        page = client.get(QUEUE)
    listed = [r.pk for r in page.context["cl"].result_list]
    assert listed == [reports[1].pk, reports[0].pk]
    body = page.content.decode()
    assert "10 days" in body and "7 days" in body


def test_reject_asks_for_a_message_then_resolves_through_the_service(
    client, staff, reports, django_capture_on_commit_callbacks
):
    client.force_login(staff)
    ask = _post(client, "reject", [reports[0].pk])
    assert 'name="message"' in ask.content.decode()
    assert InvoiceReport.objects.get(pk=reports[0].pk).status == ReportStatus.OPEN
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        _post(client, "reject", [reports[0].pk], apply="1", message="The amount is right.")
    report = InvoiceReport.objects.get(pk=reports[0].pk)
    assert report.status == ReportStatus.REJECTED and report.resolved_by == staff
    assert AuditEntry.objects.filter(action="invoice_report.rejected", actor=staff).count() == 1
    assert any("The amount is right." in m.body for m in mail.outbox)
    # Resolved reports leave the default queue.
    assert [r.pk for r in client.get(QUEUE).context["cl"].result_list] == [reports[1].pk]


def test_correct_with_an_empty_message_is_refused_and_changes_nothing(client, staff, reports):
    client.force_login(staff)
    page = _post(client, "correct", [reports[1].pk], apply="1", message=" ")
    assert "Please describe the message" in page.content.decode()
    assert InvoiceReport.objects.get(pk=reports[1].pk).status == ReportStatus.OPEN
    from decimal import Decimal

    from billing.invoices.credit_notes import credit_note_issue

    note = credit_note_issue(
        invoice_id=reports[1].invoice_id,
        amount=Decimal("5.00"),
        reason="r",
        settle="credit",
        actor=staff,
    )
    _post(
        client,
        "correct",
        [reports[1].pk],
        apply="1",
        message="Credited.",
        credit_note_number=note.number,
    )
    assert InvoiceReport.objects.get(pk=reports[1].pk).credit_note_number == note.number


def test_staff_without_the_change_permission_cannot_decide(client, reports):
    viewer = UserFactory(username="clerk", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_invoicereport"))
    client.force_login(viewer)
    page = client.get(QUEUE)
    assert page.status_code == 200 and page.context["action_form"] is None
    _post(client, "reject", [reports[0].pk], apply="1", message="No.")
    assert InvoiceReport.objects.get(pk=reports[0].pk).status == ReportStatus.OPEN
