"""Demo data: the users of ARCHITECTURE.md §6 and 14 months of billing history.

Everything goes through the same services production uses. Running it again
changes nothing: a seeded database is recognised and left alone.
"""

import datetime
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from billing.collections.models import ReportReason
from billing.collections.services import invoice_report_open, invoice_report_reject
from billing.invoices import services as billing
from billing.invoices.credit_notes import CreditLine, credit_note_issue
from billing.invoices.models import CreditNote, Invoice, InvoiceStatus
from billing.payments import services as payment_services
from billing.payments.models import PaymentKind
from contracts import services
from contracts.models import CancellationReason, Customer, IPBlock, Membership, Registry, Role
from contracts.periods import add_months

SEED = "seed_demo"


def _at(day: datetime.date, hour: int = 10) -> datetime.datetime:
    return datetime.datetime.combine(day, datetime.time(hour), tzinfo=datetime.UTC)


def _anchor_before(today: datetime.date, days: int) -> datetime.date:
    """A period start `days` (or a few more, to stay on day 1-28) before today."""
    start = today - datetime.timedelta(days=days)
    return start - datetime.timedelta(days=max(0, start.day - 28))


class Command(BaseCommand):
    help = "Create demo users, customers, contracts and invoices in every status (idempotent)."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(username="demo@example.com").exists():
            self.stdout.write("Demo data is already there; nothing to do.")
            return
        with transaction.atomic():
            self._seed(User, timezone.localdate())
        self.stdout.write(self.style.SUCCESS(self._summary()))

    def _user(self, User, username, password, **names):
        return User.objects.create_user(
            username=username, email=username, password=password, **names
        )

    def _seed(self, User, today: datetime.date) -> None:
        admin = User.objects.create_superuser("admin", "admin@example.com", "admin-password")
        demo = self._user(
            User, "demo@example.com", "demo-password", first_name="Dana", last_name="Demo"
        )
        other = self._user(
            User, "other@example.com", "other-password", first_name="Olek", last_name="Other"
        )
        viewer = self._user(
            User, "viewer@example.com", "viewer-password", first_name="Vic", last_name="Viewer"
        )

        demo_co = Customer.objects.create(
            name="Demo Networks GmbH",
            email="billing@demo-networks.example",
            phone="+49 30 1234567",
            address_line1="Müllerstraße 42",
            postal_code="13353",
            city="Berlin",
            country="DE",
            # Real-format ids with valid check digits (python-stdnum's own examples).
            tax_id="DE136695976",
            billing_cc_emails=["accounts-payable@demo-networks.example"],
            default_currency="EUR",
            # A German customer reads German invoices and quotes its own order number.
            document_language="de",
            purchase_order_reference="PO-2026-4711",
        )
        other_co = Customer.objects.create(
            name="Other Hosting Sp. z o.o.",
            email="faktury@other-hosting.example",
            address_line1="ul. Piotrkowska 1",
            postal_code="90-001",
            city="Łódź",
            country="PL",
            tax_id="PL8567346215",
            default_currency="EUR",
        )
        Membership.objects.create(user=demo, customer=demo_co, role=Role.OWNER)
        Membership.objects.create(user=viewer, customer=demo_co, role=Role.VIEWER)
        Membership.objects.create(user=other, customer=other_co, role=Role.OWNER)

        blocks = [
            services.ipblock_create(
                prefix=f"185.{200 + i}.{j * 4}.0/22", registry=Registry.RIPE, actor=SEED
            )
            for i in range(3)
            for j in range(3)
        ]
        blocks += [
            services.ipblock_create(
                prefix=f"23.{150 + i}.0.0/24", registry=Registry.ARIN, actor=SEED
            )
            for i in range(3)
        ]

        # Contract 1 (EUR): 14 months of paid history, one void, one refund, latest open.
        recent = _anchor_before(today, 3)
        c1 = services.contract_create(
            customer=demo_co,
            block_ids=[blocks[0].pk, blocks[1].pk],
            price_per_block=Decimal("350.00"),
            currency="EUR",
            started_on=add_months(recent, -13, recent.day),
            actor=SEED,
        )
        # Contract 2 (USD): the latest invoice is overdue but inside the grace period.
        overdue = _anchor_before(today, 17)
        c2 = services.contract_create(
            customer=demo_co,
            block_ids=[blocks[9].pk, blocks[10].pk, blocks[11].pk],
            price_per_block=Decimal("299.99"),
            currency="USD",
            started_on=add_months(overdue, -9, overdue.day),
            actor=SEED,
        )
        # Contract 3 (EUR): started the day before yesterday, its first invoice a draft.
        c3 = services.contract_create(
            customer=demo_co,
            block_ids=[blocks[2].pk],
            price_per_block=Decimal("410.00"),
            currency="EUR",
            started_on=today - datetime.timedelta(days=2),
            billing_anchor_day=1,
            actor=SEED,
        )
        # The other customer: a cancelled old contract and a live one (reverse charge, PL).
        c4 = services.contract_create(
            customer=other_co,
            block_ids=[blocks[3].pk],
            price_per_block=Decimal("320.00"),
            currency="EUR",
            started_on=add_months(recent, -5, recent.day),
            actor=SEED,
        )
        c5 = services.contract_create(
            customer=other_co,
            block_ids=[blocks[4].pk],
            price_per_block=Decimal("300.00"),
            currency="EUR",
            started_on=add_months(recent, -12, recent.day),
            actor=SEED,
        )
        for contract in (c1, c2, c4, c5):
            for block in contract.blocks.all():
                services.assignment_create(
                    contract=contract,
                    block=block,
                    reference=f"{block.prefix.replace('/', '-')}-ASSIGN",
                    netname=f"NET-{contract.customer.name.split()[0].upper()}-{block.pk}",
                    actor=SEED,
                )
                first_octets = block.prefix.split(".")
                services.rdns_create(
                    contract=contract,
                    block=block,
                    zone=f"{first_octets[2]}.{first_octets[1]}.{first_octets[0]}.in-addr.arpa",
                    nameservers="ns1.example.net ns2.example.net",
                    actor=SEED,
                )

        # Issue the history day by day, as the daily billing run would have.
        day = min(c.started_on for c in (c1, c2, c4, c5))
        while day < today - datetime.timedelta(days=2):
            billing.billing_run(today=day, actor=SEED)
            day += datetime.timedelta(days=1)
        billing.contract_bill_due_periods(
            contract_id=c3.pk, today=today, actor=SEED, finalize=False
        )
        billing.billing_run(today=today, actor=SEED)

        self._settle(c1, today, void_index=3, refund_index=5)
        self._settle(c2, today, uncollectible_index=2)
        self._settle(c4, today)
        self._settle(c5, today, keep_newest_open=False)
        services.contract_mark_past_due(contract_id=c2.pk, actor=SEED)
        overdue_invoice = c2.invoices.filter(status=InvoiceStatus.OPEN).latest("period_start")
        failed = payment_services.payment_create(
            invoice_id=overdue_invoice.pk,
            provider="sandbox",
            kind=PaymentKind.AUTOMATIC,
            actor=SEED,
        )
        payment_services.payment_record_failure(
            payment_id=failed.pk,
            actor=SEED,
            code="card_declined",
            message="Your card was declined.",
            now=_at(overdue_invoice.issue_date),
        )
        services.contract_cancel(
            contract_id=c5.pk,
            reason=CancellationReason.CUSTOMER_REQUEST,
            actor=SEED,
            now=_at(today - datetime.timedelta(days=20)),
        )
        self._reports(c1, demo=demo, admin=admin)
        self._credit_notes(demo_co, c1, blocks[5], today)

    def _reports(self, contract, *, demo, admin) -> None:
        """The newest open invoice is under review; an earlier paid one was reported and the
        report rejected."""
        under_review = contract.invoices.filter(status=InvoiceStatus.OPEN).latest("period_start")
        invoice_report_open(
            invoice_id=under_review.pk,
            reason=ReportReason.WRONG_AMOUNT,
            description="Block 185.200.4.0/22 is billed at 350.00; our order says 320.00.",
            expected_correction="350.00 -> 320.00 for 185.200.4.0/22, VAT recalculated.",
            reported_by=demo,
            actor=demo,
        )
        paid = contract.invoices.filter(status=InvoiceStatus.PAID).order_by("-period_start")[1]
        rejected = invoice_report_open(
            invoice_id=paid.pk,
            reason=ReportReason.WRONG_PERIOD,
            description="The period overlaps the previous invoice by one day.",
            reported_by=demo,
            actor=demo,
        )
        invoice_report_reject(
            report_id=rejected.pk,
            message=(
                "The period ends on the day before the next one starts (both dates are "
                "inclusive), so no day is billed twice. The invoice stands."
            ),
            actor=admin,
        )

    def _credit_notes(self, customer, contract, spare_block, today: datetime.date) -> None:
        """A credit note on an open invoice, one on a paid invoice refunded, and one left as
        credit that the next invoice (a new contract's first) uses at finalisation."""
        open_invoice = contract.invoices.filter(status=InvoiceStatus.OPEN).latest("period_start")
        first_line = open_invoice.lines.order_by("position").first()
        credit_note_issue(
            invoice_id=open_invoice.pk,
            lines=[CreditLine(first_line.pk, Decimal("58.33"))],
            reason="Block announced 5 days late: those days are credited",
            settle="credit",
            actor=SEED,
        )
        paid = list(contract.invoices.filter(status=InvoiceStatus.PAID).order_by("period_start"))
        refunded = credit_note_issue(
            invoice_id=paid[-2].pk,
            amount=Decimal("119.00"),
            reason="Wrong amount: one block was billed at the old price",
            settle="refund",
            actor=SEED,
        )
        # The refund goes back through the sandbox now, not after the seed's commit.
        payment_services.credit_note_refund(credit_note_id=refunded.pk, actor=SEED)
        credit_note_issue(
            invoice_id=paid[-1].pk,
            lines=[CreditLine(paid[-1].lines.order_by("position").last().pk)],
            reason="Block 185.200.4.0/22 was returned early; credited to your account",
            settle="credit",
            actor=SEED,
        )
        extra = services.contract_create(
            customer=customer,
            block_ids=[spare_block.pk],
            price_per_block=Decimal("250.00"),
            currency="EUR",
            started_on=today,
            actor=SEED,
        )
        billing.contract_bill_due_periods(contract_id=extra.pk, today=today, actor=SEED)

    def _settle(
        self,
        contract,
        today: datetime.date,
        *,
        void_index: int | None = None,
        refund_index: int | None = None,
        uncollectible_index: int | None = None,
        keep_newest_open: bool = True,
    ) -> None:
        """Pay every invoice (but the newest, by default), with the given exceptions."""
        invoices = list(
            contract.invoices.filter(status=InvoiceStatus.OPEN).order_by("period_start")
        )
        for index, invoice in enumerate(invoices[:-1] if keep_newest_open else invoices):
            if index == void_index:
                billing.invoice_void(invoice_id=invoice.pk, actor=SEED, reason="issued in error")
                continue
            if index == uncollectible_index:
                billing.invoice_mark_uncollectible(
                    invoice_id=invoice.pk, actor=SEED, reason="written off"
                )
                continue
            payment = payment_services.payment_create(
                invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.AUTOMATIC, actor=SEED
            )
            paid_at = _at(invoice.issue_date + datetime.timedelta(days=1))
            payment_services.payment_record_success(
                payment_id=payment.pk,
                provider_payment_id=f"pi_sandbox_seed_{payment.pk}",
                provider_charge_id=f"ch_sandbox_seed_{payment.pk}",
                brand="visa",
                last4="4242",
                actor=SEED,
                now=paid_at,
            )
            if index == refund_index:
                payment_services.payment_record_refund(
                    payment_id=payment.pk,
                    amount=payment.amount,
                    provider_refund_id=f"re_sandbox_seed_{payment.pk}",
                    actor=SEED,
                    reason="service outage credit",
                    now=paid_at + datetime.timedelta(days=3),
                )
        if contract.invoices.filter(status=InvoiceStatus.OPEN).count() > 1:
            raise AssertionError("seed_demo left more than one open invoice on a contract")

    def _summary(self) -> str:
        counts = {s.label: Invoice.objects.filter(status=s).count() for s in InvoiceStatus}
        listed = ", ".join(f"{label}: {n}" for label, n in counts.items())
        return (
            f"Seeded demo data. Blocks: {IPBlock.objects.count()}; invoices: {listed}; "
            f"credit notes: {CreditNote.objects.count()}."
        )
