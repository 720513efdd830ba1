"""The whole correction in Chromium: the customer reports a wrong invoice, staff issue a credit
note in admin and close the report with it, the customer sees the reduced amount due and
downloads the credit note's PDF."""

import datetime
import os

import pytest

from billing.collections.models import InvoiceReport, ReportStatus
from billing.invoices.models import CreditNote
from tests.billing.invoices.pdf_helpers import pdf_text
from tests.factories import MembershipFactory, UserFactory, make_invoice

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
sync_api = pytest.importorskip("playwright.sync_api")

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _login(page, url: str, username: str, password: str, *, label: str = "E-mail") -> None:
    page.goto(url)
    page.get_by_label(label).fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_report_credit_note_and_the_customer_sees_it(browser, live_server, tmp_path):
    customer_user = UserFactory(username="cora@example.com")
    customer_user.set_password("customer-password")
    customer_user.save()
    customer = MembershipFactory(user=customer_user, customer__name="Cora Networks").customer
    invoice = make_invoice(customer=customer, started_on=datetime.date(2026, 1, 1))  # 119.00
    staff = UserFactory(username="boss", is_staff=True, is_superuser=True)
    staff.set_password("staff-password")
    staff.save()

    # The customer reports the problem.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = context.new_page()
    _login(
        page,
        f"{live_server.url}/invoices/{invoice.number}/",
        "cora@example.com",
        "customer-password",
    )
    page.get_by_role("link", name="Report a problem").click()
    page.get_by_label("Wrong amount").check()
    page.get_by_label("Describe the problem").fill("One block was billed at the old price.")
    page.get_by_role("button", name="Send report").click()
    sync_api.expect(page.get_by_text("Under review").first).to_be_visible()
    report = InvoiceReport.objects.get(invoice=invoice)

    # Staff issue a credit note for part of the line, then close the report with it.
    admin_context = browser.new_context(viewport={"width": 1280, "height": 800})
    admin = admin_context.new_page()
    _login(
        admin,
        f"{live_server.url}/admin/login/?next=/admin/",
        "boss",
        "staff-password",
        label="Username",
    )
    admin.goto(f"{live_server.url}/admin/invoices/invoice/?q={invoice.number}")
    admin.locator(f"input[name=_selected_action][value='{invoice.pk}']").check()
    admin.select_option("select[name=action]", "issue_credit_note")
    admin.get_by_role("button", name="Go").click()
    line = invoice.lines.get()
    admin.fill(f"input[name=part_{line.pk}]", "40.00")
    admin.fill("input[name=reason]", "One block was billed at the old price")
    admin.get_by_role("button", name="Issue credit note").click()
    sync_api.expect(admin.locator(".messagelist")).to_contain_text("issued for 47.60 EUR")
    note = CreditNote.objects.get(invoice=invoice)
    admin.goto(f"{live_server.url}/admin/collections/invoicereport/")
    admin.locator(f"input[name=_selected_action][value='{report.pk}']").check()
    admin.select_option("select[name=action]", "correct")
    admin.get_by_role("button", name="Go").click()
    admin.fill("textarea[name=message]", "We credited the difference.")
    admin.fill("input[name=credit_note_number]", note.number)
    admin.get_by_role("button", name="Close as corrected and tell the customer").click()
    sync_api.expect(admin.locator(".messagelist")).to_be_visible()
    report.refresh_from_db()
    assert report.status == ReportStatus.CORRECTED and report.credit_note_number == note.number

    # The customer sees the reduced amount and downloads the credit note.
    page.goto(f"{live_server.url}/invoices/{invoice.number}/")
    sync_api.expect(page.get_by_role("heading", name="Credit notes")).to_be_visible()
    html = page.content()
    assert "Amount due</dt><dd><strong>71.40 EUR" in html
    assert note.number in html
    with page.expect_download() as caught:
        page.get_by_role("link", name="PDF", exact=True).click()
    path = tmp_path / "credit-note.pdf"
    caught.value.save_as(path)
    assert caught.value.suggested_filename == f"{note.number}.pdf"
    text = pdf_text(path.read_bytes())
    assert f"Credit note {note.number}" in text and invoice.number in text
    assert "Total credited -€47.60" in text
    context.close()
    admin_context.close()
