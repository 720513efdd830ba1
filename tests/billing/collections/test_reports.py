"""Reports (disputes) through the services: what may be reported, the hold every
collection step applies under its lock, staff decisions, audit and e-mails."""

import datetime

import pytest
import time_machine
from django.core import mail

from billing.collections import notifications, services, tasks
from billing.collections.models import InvoiceReport, ReportReason, ReportStatus
from billing.invoices import services as invoice_services
from billing.invoices.models import InvoiceStatus
from billing.payments import services as payments
from billing.payments.models import Payment, PaymentKind
from contracts.models import ContractStatus, Role
from core.errors import DomainError, InvalidTransition
from core.models import AuditEntry
from tests.billing.invoices.pages_support import pay
from tests.factories import MembershipFactory, PaymentMethodFactory, make_contract, make_invoice

pytestmark = pytest.mark.django_db

PAST_GRACE = datetime.datetime(2026, 1, 25, 9, tzinfo=datetime.UTC)  # due 15th, grace to 22nd


@pytest.fixture
def member(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING, user__email="pay@example.com")


@pytest.fixture
def invoice(customer):
    return make_invoice(make_contract(customer))


def report_on(invoice, member, **kw):
    fields = {"reason": ReportReason.WRONG_PERIOD, "description": "Billed from December."}
    return services.invoice_report_open(
        invoice_id=invoice.pk,
        reported_by=member.user,
        actor=member.user,
        **{**fields, **kw},
    )


def _refused(call, code: str) -> str:
    reports = InvoiceReport.objects.count()
    audits = AuditEntry.objects.count()
    with pytest.raises(DomainError) as caught:
        call()
    assert caught.value.code == code, caught.value.message
    assert InvoiceReport.objects.count() == reports and AuditEntry.objects.count() == audits
    return caught.value.message


# --- Opening a report -------------------------------------------------------------------


def test_a_report_is_open_audited_and_acknowledged_once(
    invoice, member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        report = report_on(invoice, member, expected_correction="Start on 1 January.")
    assert (report.status, report.reason, report.reported_by) == (
        ReportStatus.OPEN,
        ReportReason.WRONG_PERIOD,
        member.user,
    )
    entry = AuditEntry.objects.get(action="invoice_report.opened")
    assert entry.actor == member.user and entry.customer_id == invoice.customer_id
    assert entry.after["invoice"] == invoice.number
    acks = [m for m in mail.outbox if m.subject == f"We are reviewing invoice {invoice.number}"]
    assert len(acks) == 1 and "pay@example.com" in acks[0].to
    assert "Start on 1 January." in acks[0].body
    assert notifications.notify_report(report_id=report.pk) is False  # sent once


def test_a_second_open_report_on_the_same_invoice_is_refused(invoice, member):
    report_on(invoice, member)
    message = _refused(lambda: report_on(invoice, member), "already_reported")
    assert "already under review" in message


def test_a_resolved_report_allows_a_new_one(invoice, member):
    first = report_on(invoice, member)
    services.invoice_report_reject(report_id=first.pk, message="Correct as billed.", actor="s")
    second = report_on(invoice, member, reason=ReportReason.OTHER)
    assert second.pk != first.pk and second.status == ReportStatus.OPEN


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("reason", "bad_vibes", "reason_invalid"),
        ("description", "   ", "problem_missing"),
        ("description", "x" * 4001, "problem_too_long"),
        ("expected_correction", "x" * 2001, "expected_correction_too_long"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(invoice, member, field, value, code):
    _refused(lambda: report_on(invoice, member, **{field: value}), code)


def test_draft_and_void_invoices_cannot_be_reported(customer, member):
    draft = make_invoice(make_contract(customer), finalize=False)
    assert "draft" in _refused(lambda: report_on(draft, member), "not_reportable")
    void = make_invoice(make_contract(customer))
    invoice_services.invoice_void(invoice_id=void.pk, actor="t")
    assert "void" in _refused(lambda: report_on(void, member), "not_reportable")


def test_a_paid_invoice_can_be_reported_within_the_window_only(customer, member, settings):
    settings.DISPUTE_WINDOW_DAYS = 30
    with time_machine.travel(datetime.datetime(2026, 1, 2, 9, tzinfo=datetime.UTC), tick=False):
        old = pay(make_invoice(make_contract(customer)))
        recent = pay(make_invoice(make_contract(customer)))
    assert old.status == InvoiceStatus.PAID
    with time_machine.travel(datetime.datetime(2026, 2, 1, 8, tzinfo=datetime.UTC), tick=False):
        assert report_on(recent, member).status == ReportStatus.OPEN  # 29 days 23 hours
    with time_machine.travel(datetime.datetime(2026, 2, 2, 9, tzinfo=datetime.UTC), tick=False):
        message = _refused(lambda: report_on(old, member), "not_reportable")
    assert "more than 30 days ago" in message


# --- The hold, re-checked under each lock -----------------------------------------------


def test_grace_enforcement_rechecks_the_report_under_its_lock(invoice, member):
    report_on(invoice, member)
    with time_machine.travel(PAST_GRACE, tick=False):
        # Called directly, past the candidate query: the locked re-check alone must refuse.
        assert services.contract_enforce_grace(contract_id=invoice.contract_id) is False
        assert (
            services.contract_mark_past_due_if_overdue(
                contract_id=invoice.contract_id, today=PAST_GRACE.date()
            )
            is False
        )
    invoice.contract.refresh_from_db()
    assert invoice.contract.status == ContractStatus.ACTIVE


def test_a_reported_invoice_does_not_shield_another_overdue_one(customer, member):
    contract = make_contract(customer)
    reported = make_invoice(contract)
    report_on(reported, member)
    other = make_invoice(make_contract(customer))
    with time_machine.travel(PAST_GRACE, tick=False):
        assert services.contract_enforce_grace(contract_id=other.contract_id) is True
        assert services.contract_enforce_grace(contract_id=contract.pk) is False


def test_reminders_are_not_sent_for_a_reported_invoice(invoice, member):
    report_on(invoice, member)
    mail.outbox.clear()
    with time_machine.travel(PAST_GRACE, tick=False):
        assert notifications.notify_invoice_overdue(invoice_id=invoice.pk) is False
        assert notifications.notify_cancellation_warning(invoice_id=invoice.pk, days=1) is False
    assert mail.outbox == []


def test_the_automatic_charge_is_held_under_the_lock_but_the_customer_may_pay(customer, member):
    PaymentMethodFactory(customer=customer, provider_id="pm_card_visa", last4="4242")
    invoice = make_invoice(make_contract(customer))  # its queued charge has not run
    report_on(invoice, member)
    # The payment service asks collections' rule after locking the invoice.
    assert (
        payments.invoice_charge_automatically(
            invoice_id=invoice.pk, actor="t", hold=tasks.held_for_review
        )
        is None
    )
    tasks.charge_invoice(invoice.pk)
    assert not Payment.objects.filter(invoice=invoice).exists()
    payments.invoice_pay_with_saved_method(
        invoice_id=invoice.pk, payment_method_id="pm_card_visa", off_session=False, actor="t"
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.PAID
    assert Payment.objects.get(invoice=invoice).kind == PaymentKind.API


# --- Staff decisions ---------------------------------------------------------------------


def test_reject_is_audited_extends_grace_and_is_idempotent(
    invoice, member, staff, django_capture_on_commit_callbacks
):
    report = report_on(invoice, member)
    with time_machine.travel(PAST_GRACE, tick=False):
        services.invoice_report_start_review(report_id=report.pk, actor=staff)
        services.invoice_report_start_review(report_id=report.pk, actor=staff)
        with django_capture_on_commit_callbacks(execute=True):
            services.invoice_report_reject(report_id=report.pk, message="It stands.", actor=staff)
            services.invoice_report_reject(report_id=report.pk, message="Again.", actor=staff)
    report.refresh_from_db()
    assert report.status == ReportStatus.REJECTED and report.staff_message == "It stands."
    assert report.resolved_by == staff and report.grace_until == datetime.date(2026, 2, 1)
    invoice.refresh_from_db()
    assert invoice.cancellation_date == datetime.date(2026, 2, 1)
    actions = list(
        AuditEntry.objects.filter(action__startswith="invoice_report.")
        .order_by("pk")
        .values_list("action", flat=True)
    )
    assert actions == [
        "invoice_report.opened",
        "invoice_report.under_review",
        "invoice_report.rejected",
    ]
    assert AuditEntry.objects.filter(action="contract.grace_extended").count() == 1
    assert len([m for m in mail.outbox if "the invoice stands" in m.subject]) == 1
    with pytest.raises(InvalidTransition):
        services.invoice_report_correct(report_id=report.pk, message="x", actor=staff)


def test_reject_never_shortens_a_longer_staff_extension(invoice, member, staff):
    from contracts.services import contract_extend_grace

    with time_machine.travel(PAST_GRACE, tick=False):
        contract_extend_grace(
            contract_id=invoice.contract_id, until=datetime.date(2026, 3, 1), actor=staff
        )
        report = report_on(invoice, member)
        services.invoice_report_reject(report_id=report.pk, message="It stands.", actor=staff)
    invoice.contract.refresh_from_db()
    assert invoice.contract.grace_extended_until == datetime.date(2026, 3, 1)


def test_a_message_is_required_to_resolve(invoice, member, staff):
    report = report_on(invoice, member)
    with pytest.raises(DomainError):
        services.invoice_report_reject(report_id=report.pk, message="  ", actor=staff)
    report.refresh_from_db()
    assert report.status == ReportStatus.OPEN and report.resolved_at is None


def test_correct_names_the_credit_note_and_tells_the_customer(
    invoice, member, staff, django_capture_on_commit_callbacks
):
    from decimal import Decimal

    from billing.invoices.credit_notes import credit_note_issue

    report = report_on(invoice, member)
    # Only a credit note of this very invoice can close the report as corrected.
    with pytest.raises(DomainError, match="does not credit this report's invoice"):
        services.invoice_report_correct(
            report_id=report.pk, message="Done.", credit_note_number="CN-2026-000001", actor=staff
        )
    report.refresh_from_db()
    assert report.status == ReportStatus.OPEN
    note = credit_note_issue(
        invoice_id=invoice.pk,
        amount=Decimal("10.00"),
        reason="December days",
        settle="credit",
        actor=staff,
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.invoice_report_correct(
            report_id=report.pk,
            message="We credited the December days.",
            credit_note_number=note.number,
            actor=staff,
        )
    report.refresh_from_db()
    assert report.status == ReportStatus.CORRECTED
    assert report.credit_note_number == note.number
    (notice,) = [m for m in mail.outbox if m.subject.endswith(": corrected")]
    assert note.number in notice.body and "December days" in notice.body
    entry = AuditEntry.objects.get(action="invoice_report.corrected")
    assert entry.after["credit_note"] == note.number and entry.actor == staff


def test_the_queue_is_oldest_first(customer, member):
    from billing.collections.selectors import report_queue

    invoices = [make_invoice(make_contract(customer)) for _ in range(3)]
    for day, inv in zip((3, 1, 2), invoices, strict=True):
        moment = datetime.datetime(2026, 1, day, 9, tzinfo=datetime.UTC)
        with time_machine.travel(moment, tick=False):
            report_on(inv, member)
    assert [r.invoice_id for r in report_queue()] == [
        invoices[1].pk,
        invoices[2].pk,
        invoices[0].pk,
    ]


# --- The customer's e-mails in the customer's document language -------------------------

REPORT_MAILS = {
    "de": {
        "received": ("Wir prüfen Rechnung {n}", "wir haben Ihre Meldung eines Problems mit "
                     "Rechnung {n} (Falscher Abrechnungszeitraum) erhalten und prüfen sie."),
        "rejected": ("Ihre Meldung zu Rechnung {n}: Die Rechnung bleibt bestehen",
                     "Die Rechnung über {amount} ist wieder zahlbar. Bleibt sie unbezahlt, wird "
                     "der Vertrag {ref} ({blocks}) am {day} gekündigt."),
        "corrected": ("Ihre Meldung zu Rechnung {n}: korrigiert",
                      "wir haben Ihre Meldung zu Rechnung {n} geprüft und die Rechnung mit der "
                      "Rechnungskorrektur {cn} berichtigt:"),
        "pay": "Online bezahlen",
        "hello": "Guten Tag",
    },
    "en": {
        "received": ("We are reviewing invoice {n}", "we received a report of a problem with "
                     "invoice {n} (Wrong billing period) and are reviewing it."),
        "rejected": ("Your report on invoice {n}: the invoice stands",
                     "The invoice over {amount} is payable again. Contract {ref} ({blocks}) will "
                     "be cancelled on {day} if it stays unpaid."),
        "corrected": ("Your report on invoice {n}: corrected",
                      "we reviewed your report on invoice {n} and corrected it with credit note "
                      "{cn}:"),
        "pay": "Pay online",
        "hello": "Hello",
    },
}  # fmt: skip


@pytest.mark.parametrize("language", ["de", "en"])
def test_report_e_mails_are_in_the_customers_document_language(
    customer, member, staff, language, django_capture_on_commit_callbacks
):
    from decimal import Decimal

    from billing.invoices.credit_notes import credit_note_issue
    from core import l10n

    customer.document_language = language
    customer.save()
    invoice = make_invoice(make_contract(customer))
    expected = REPORT_MAILS[language]
    with django_capture_on_commit_callbacks(execute=True):
        first = report_on(invoice, member)
    with (
        time_machine.travel(PAST_GRACE, tick=False),
        django_capture_on_commit_callbacks(execute=True),
    ):
        services.invoice_report_reject(report_id=first.pk, message="It stands.", actor=staff)
    invoice.refresh_from_db()
    # What the rejection said: the amount due then and the new cancellation date it set.
    values = {
        "n": invoice.number,
        "ref": invoice.contract.reference,
        "blocks": ", ".join(b.prefix for b in invoice.contract.blocks.all()),
        "amount": l10n.money(invoice.amount_remaining, invoice.currency, language),
        "day": l10n.date(invoice.cancellation_date, language, length="long"),
    }
    with django_capture_on_commit_callbacks(execute=True):
        second = report_on(invoice, member)
    note = credit_note_issue(
        invoice_id=invoice.pk, amount=Decimal("10.00"), reason="x", settle="credit", actor=staff
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.invoice_report_correct(
            report_id=second.pk, message="Credited.", credit_note_number=note.number, actor=staff
        )
    values["cn"] = note.number
    to_customer = [m for m in mail.outbox if "pay@example.com" in m.to]
    by_subject = {m.subject: m for m in to_customer}
    assert len(to_customer) == 4  # received twice, rejected, corrected
    for step in ("received", "rejected", "corrected"):
        subject, sentence = (text.format(**values) for text in expected[step])
        message = by_subject[subject]
        assert message.body.startswith(f"{expected['hello']} {customer.name},")
        assert sentence in message.body, message.body
        html = message.alternatives[0][0]
        assert f'<html lang="{language}">' in html and f"<title>{subject}</title>" in html
    for step in ("rejected", "corrected"):  # something is still due after both
        message = by_subject[expected[step][0].format(**values)]
        assert f"{expected['pay']}: " in message.body and "/pay/?token=" in message.body
    other = {"de": "en", "en": "de"}[language]
    for step in ("received", "rejected", "corrected"):
        foreign = REPORT_MAILS[other][step][0].format(**values)
        assert foreign not in by_subject
