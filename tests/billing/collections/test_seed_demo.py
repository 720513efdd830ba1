import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from billing.invoices.models import Invoice, InvoiceStatus
from contracts.models import AssignmentRequest, ContractStatus, LeaseContract, RdnsDelegation
from tests.billing.invoices.document_cases import VALIDATOR, run_validator

pytestmark = pytest.mark.django_db


def test_seed_demo_covers_every_status_and_is_safe_to_run_twice(capsys):
    call_command("seed_demo")
    counts = {s: Invoice.objects.filter(status=s).count() for s in InvoiceStatus}
    call_command("seed_demo")
    assert "already there" in capsys.readouterr().out
    assert {s: Invoice.objects.filter(status=s).count() for s in InvoiceStatus} == counts
    assert all(counts[s] >= 1 for s in InvoiceStatus), counts

    demo = get_user_model().objects.get(username="demo@example.com")
    assert demo.check_password("demo-password")
    assert (
        get_user_model().objects.get(username="other@example.com").check_password("other-password")
    )
    assert get_user_model().objects.get(username="admin").is_superuser
    mine = Invoice.objects.filter(customer__memberships__user=demo)
    assert set(mine.values_list("currency", flat=True)) >= {"EUR", "USD"}
    issued = mine.exclude(issue_date=None).order_by("issue_date")
    assert (issued.last().issue_date - issued.first().issue_date).days >= 365
    assert LeaseContract.objects.filter(status=ContractStatus.PAST_DUE).exists()
    assert AssignmentRequest.objects.exists() and RdnsDelegation.objects.exists()
    overdue = [
        i for i in mine.filter(status=InvoiceStatus.OPEN) if i.due_date < i.cancellation_date
    ]
    assert any(i.is_overdue(__import__("datetime").date.today()) for i in overdue)


def test_seed_demo_shows_credit_notes_and_the_credit_balance():
    from decimal import Decimal

    from billing.invoices.models import CreditNote, CustomerBalanceTransaction

    call_command("seed_demo")
    notes = list(CreditNote.objects.select_related("invoice").order_by("number"))
    assert len(notes) == 3
    on_open, refunded, as_credit = notes
    assert on_open.invoice.status == InvoiceStatus.OPEN and on_open.pre_payment_amount > 0
    assert refunded.refund_amount == Decimal("119.00")
    assert refunded.refunds.get().status == "succeeded"
    assert as_credit.credit_amount > 0
    applied = CustomerBalanceTransaction.objects.get(kind="applied_to_invoice")
    assert applied.invoice.applied_balance == -applied.amount > 0
    assert applied.invoice.issue_date >= as_credit.issue_date


def test_seed_demo_has_an_invoice_under_review_and_a_rejected_report():
    from billing.collections.models import InvoiceReport, ReportStatus

    call_command("seed_demo")
    demo = get_user_model().objects.get(username="demo@example.com")
    reports = InvoiceReport.objects.filter(invoice__customer__memberships__user=demo)
    waiting = reports.get(resolved_at__isnull=True)
    assert waiting.status == ReportStatus.OPEN and waiting.invoice.status == InvoiceStatus.OPEN
    rejected = reports.get(status=ReportStatus.REJECTED)
    assert rejected.staff_message and rejected.resolved_by.username == "admin"
    assert (
        Invoice.objects.filter(customer__memberships__user=demo, reports__resolved_at=None)
        .filter(reports__isnull=False)
        .count()
        == 1
    )


def _demo_customer():
    from contracts.models import Customer

    return Customer.objects.get(name="Demo Networks GmbH")


def test_the_demos_german_customer_gets_german_invoices():
    from billing.invoices.documents.pdf import invoice_pdf_document
    from tests.billing.invoices.pdf_helpers import pdf_text

    call_command("seed_demo")
    customer = _demo_customer()
    assert customer.document_language == "de"
    issued = list(Invoice.objects.filter(customer=customer).exclude(number=None).order_by("pk"))
    assert len(issued) >= 5
    assert {i.document_language for i in issued} == {"de"}
    for invoice in issued:
        text = pdf_text(invoice_pdf_document(invoice).content)
        assert f"Rechnung {invoice.number}" in text, text
        assert "Rechnungsdatum" in text and "Gesamtbetrag" in text and "Seite 1 von" in text
        assert not any(label in text for label in ("Issue date", "Subtotal", "Page 1 of"))


@pytest.mark.skipif(not VALIDATOR.exists(), reason="../shared/einvoice is not beside the repo")
def test_the_demos_e_invoices_pass_the_en16931_business_rules(tmp_path):
    from billing.invoices.documents.pdf import credit_note_xrechnung, invoice_xrechnung
    from billing.invoices.models import CreditNote

    call_command("seed_demo")
    files = []
    for invoice in Invoice.objects.order_by("pk"):
        if invoice.has_einvoice:
            files.append(tmp_path / f"{invoice.number}.xml")
            files[-1].write_bytes(invoice_xrechnung(invoice))
    for note in CreditNote.objects.order_by("pk"):
        files.append(tmp_path / f"{note.number}.xml")
        files[-1].write_bytes(credit_note_xrechnung(note))
    assert len(files) >= 10

    output = run_validator(files)

    for path in files:
        assert f"{path}: 0 fatal," in output, output
    assert "fatal:" not in output, output
