"""The "Report a problem" page, and "Under review" on the invoice list and detail pages."""

import datetime

import pytest
import time_machine

from billing.collections import services
from billing.collections.models import InvoiceReport, ReportReason, ReportStatus
from contracts.models import Role
from tests.billing.invoices.pages_support import invoice_on
from tests.factories import CustomerFactory, MembershipFactory

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("on_pages_day")]

FORM = {
    "reason": ReportReason.WRONG_AMOUNT,
    "description": "Two blocks billed, one leased.",
    "expected_correction": "One block.",
}


@pytest.fixture
def invoice(customer):
    return invoice_on(customer, datetime.date(2026, 6, 1))


@pytest.fixture
def as_role(client, customer):
    def login(role: str):
        client.force_login(MembershipFactory(customer=customer, role=role).user)
        return client

    return login


@pytest.mark.parametrize("role", [Role.OWNER, Role.BILLING])
def test_owner_and_billing_report_a_problem(as_role, invoice, role):
    client = as_role(role)
    detail = client.get(f"/invoices/{invoice.number}/").content.decode()
    assert f'href="/invoices/{invoice.number}/report/"' in detail
    form = client.get(f"/invoices/{invoice.number}/report/")
    assert form.status_code == 200 and "Wrong tax or tax id" in form.content.decode()
    response = client.post(f"/invoices/{invoice.number}/report/", FORM)
    assert response.status_code == 302 and response["Location"] == f"/invoices/{invoice.number}/"
    report = InvoiceReport.objects.get(invoice=invoice)
    assert (report.reason, report.description, report.expected_correction) == (
        "wrong_amount",
        "Two blocks billed, one leased.",
        "One block.",
    )
    page = client.get(response["Location"]).content.decode()
    assert "is now under review" in page  # the confirmation message
    assert "Under review" in page and "Two blocks billed, one leased." in page
    assert f"/invoices/{invoice.number}/report/" not in page  # no second report offered


def test_a_viewer_cannot_report(as_role, invoice):
    client = as_role(Role.VIEWER)
    assert "/report/" not in client.get(f"/invoices/{invoice.number}/").content.decode()
    assert client.get(f"/invoices/{invoice.number}/report/").status_code == 403
    assert client.post(f"/invoices/{invoice.number}/report/", FORM).status_code == 403
    assert not InvoiceReport.objects.exists()


def test_another_customers_invoice_answers_404(as_role, db):
    foreign = invoice_on(CustomerFactory(), datetime.date(2026, 6, 1))
    client = as_role(Role.OWNER)
    assert client.get(f"/invoices/{foreign.number}/report/").status_code == 404
    assert client.post(f"/invoices/{foreign.number}/report/", FORM).status_code == 404
    assert not InvoiceReport.objects.exists()


def test_a_form_without_a_description_says_so(as_role, invoice):
    response = as_role(Role.OWNER).post(
        f"/invoices/{invoice.number}/report/", {**FORM, "description": "  "}
    )
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    assert not InvoiceReport.objects.exists()


def test_a_second_report_is_explained_not_taken(as_role, invoice):
    client = as_role(Role.OWNER)
    client.post(f"/invoices/{invoice.number}/report/", FORM)
    again = client.get(f"/invoices/{invoice.number}/report/")
    assert (
        "already under review" in again.content.decode()
        and "<textarea" not in again.content.decode()
    )
    response = client.post(f"/invoices/{invoice.number}/report/", FORM)
    assert response.status_code == 409 and "already under review" in response.content.decode()
    assert InvoiceReport.objects.count() == 1


def test_a_long_settled_invoice_cannot_be_reported(as_role, customer, settings):
    from tests.billing.invoices.pages_support import pay

    settings.DISPUTE_WINDOW_DAYS = 30
    with time_machine.travel(datetime.datetime(2026, 3, 2, 9, tzinfo=datetime.UTC), tick=False):
        old = pay(invoice_on(customer, datetime.date(2026, 3, 1)))
    response = as_role(Role.OWNER).post(f"/invoices/{old.number}/report/", FORM)
    assert response.status_code == 409
    assert "more than 30 days ago" in response.content.decode()
    assert not InvoiceReport.objects.exists()


def test_the_list_shows_and_filters_invoices_under_review(as_role, customer, invoice):
    other = invoice_on(customer, datetime.date(2026, 5, 1))
    client = as_role(Role.OWNER)
    before = client.get("/invoices/").content.decode()  # cached until an invoice changes
    assert "Under review" not in before.split('name="status"')[1].split("</table>")[1]
    services.invoice_report_open(
        invoice_id=invoice.pk,
        reason=ReportReason.OTHER,
        description="x",
        reported_by=None,
        actor="t",
    )
    page = client.get("/invoices/")
    rows = {inv.number: inv.under_review for inv in page.context["invoices"]}
    assert rows == {invoice.number: True, other.number: False}
    assert 'badge--review">Under review' in page.content.decode()
    filtered = client.get("/invoices/", {"status": "under_review"})
    assert [inv.number for inv in filtered.context["invoices"]] == [invoice.number]
    assert filtered.context["query"].notes == []
    report = InvoiceReport.objects.get()
    services.invoice_report_reject(report_id=report.pk, message="Correct.", actor="staff")
    assert [
        i.number for i in client.get("/invoices/", {"status": "under_review"}).context["invoices"]
    ] == []


def test_the_detail_page_shows_the_staff_answer(as_role, invoice):
    report = services.invoice_report_open(
        invoice_id=invoice.pk,
        reason=ReportReason.WRONG_TAX,
        description="Our VAT id is missing.",
        reported_by=None,
        actor="t",
    )
    services.invoice_report_reject(
        report_id=report.pk, message="The VAT id is on page 1.", actor="staff"
    )
    assert InvoiceReport.objects.get().status == ReportStatus.REJECTED
    page = as_role(Role.OWNER).get(f"/invoices/{invoice.number}/").content.decode()
    assert "The VAT id is on page 1." in page and "Rejected on" in page
    assert "badge--review" not in page


def test_page_query_counts_do_not_grow_with_reports(
    as_role, customer, django_assert_max_num_queries
):
    client = as_role(Role.OWNER)
    invoices = [invoice_on(customer, datetime.date(2026, 5, 1 + i)) for i in range(6)]
    for inv in invoices[:5]:
        first = services.invoice_report_open(
            invoice_id=inv.pk, reason="other", description="a", reported_by=None, actor="t"
        )
        services.invoice_report_reject(report_id=first.pk, message="no", actor="s")
        services.invoice_report_open(
            invoice_id=inv.pk, reason="other", description="b", reported_by=None, actor="t"
        )
    with django_assert_max_num_queries(10) as many:
        client.get(f"/invoices/{invoices[0].number}/")
    with django_assert_max_num_queries(10) as none:
        client.get(f"/invoices/{invoices[5].number}/")
    assert len(many.captured_queries) == len(none.captured_queries)
    with django_assert_max_num_queries(8):
        page = client.get("/invoices/", {"per_page": "100", "status": "under_review"})
    assert len(page.context["invoices"]) == 5
