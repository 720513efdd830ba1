"""Every page a customer can see, with the data that makes each one show what it can.

Used by tests/test_customer_pages.py (rendered by Django's test client) and by
tests/browser/test_every_page_browser.py (Chromium at desktop and phone width): when a
customer page is added, add it here and both suites check it.
"""

import contextlib
import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from billing.api.models import ApiScope, WebhookAttempt, WebhookDelivery
from billing.api.tokens import token_create
from billing.api.webhooks import endpoint_create
from billing.collections.services import invoice_report_open
from billing.invoices.credit_notes import CreditLine, credit_note_issue
from billing.invoices.links import pay_token
from billing.invoices.models import Invoice
from billing.payments import services as payments
from billing.payments.models import PaymentStatus
from billing.payments.providers.base import AuthenticationRequired
from contracts.models import Membership, Role
from tests.billing.invoices.pages_support import every_status, invoice_on, pay
from tests.factories import MembershipFactory, PaymentMethodFactory, UserFactory

PASSWORD = "pages-password"
OWNER = "dana@example.com"
VIEWER = "vic@example.com"
LONELY = "nobody@example.com"


@dataclass(frozen=True)
class FormPage:
    """A page that is the answer to a form, not a link: a new API token shown once, a
    webhook's signing secret. The browser opens `path`, fills `data` (a list checks those
    checkboxes) and presses the `submit` button (a CSS selector, the same in every
    language); Django's test client posts `data` to `action`."""

    name: str
    path: str
    action: str
    data: dict[str, str | list[str]]
    submit: str


@dataclass
class World:
    owner: object
    viewer: object
    lonely: object
    membership: Membership
    invoices: dict[str, Invoice]
    method: object
    # (name, path) the owner sees, the anonymous holder of a pay link sees, and so on.
    member_pages: list[tuple[str, str]] = field(default_factory=list)
    link_pages: list[tuple[str, str]] = field(default_factory=list)
    public_pages: list[tuple[str, str]] = field(default_factory=list)
    viewer_pages: list[tuple[str, str]] = field(default_factory=list)
    lonely_pages: list[tuple[str, str]] = field(default_factory=list)
    member_forms: list[FormPage] = field(default_factory=list)


def _user(username: str):
    user = UserFactory(username=username)
    user.set_password(PASSWORD)
    user.save()
    return user


def build_world() -> World:
    owner = _user(OWNER)
    membership = MembershipFactory(user=owner, customer__name="Dana Networks GmbH")
    customer = membership.customer
    viewer = _user(VIEWER)
    MembershipFactory(user=viewer, customer=customer, role=Role.VIEWER)
    lonely = _user(LONELY)

    invoices = every_status(customer)
    # Four-digit amounts with several lines and blocks: thousands separators, wrapping.
    invoices["big"] = invoice_on(
        customer, datetime.date(2026, 6, 2), price="4500.00", blocks=3, currency="EUR"
    )
    invoices["big_paid"] = pay(
        invoice_on(customer, datetime.date(2026, 5, 20), price="1250.50", blocks=2)
    )
    invoices["reported"] = invoice_on(customer, datetime.date(2026, 5, 25), price="90.00")
    # Two more to pay below: made before the customer has a card, which would pay them on
    # issue (the charge runs on commit in the browser tests' transactions).
    invoices["link_checkout"] = invoice_on(
        customer, datetime.date(2026, 5, 28), price="1840.00", blocks=2, currency="EUR"
    )
    invoices["waiting_3ds"] = invoice_on(customer, datetime.date(2026, 5, 30), price="320.00")
    invoice_report_open(
        invoice_id=invoices["reported"].pk,
        reason="wrong_amount",
        description="We returned one block in May.",
        expected_correction="Credit for the returned block",
        reported_by=owner,
        actor=owner,
    )
    # A credit note for part of a line, settled to the customer's credit: its own page, a
    # row on the paid invoice and lines on the statement of account.
    paid_line = invoices["paid"].lines.first()
    credit_note = credit_note_issue(
        invoice_id=invoices["paid"].pk,
        reason="Block returned early",
        settle="credit",
        lines=[CreditLine(paid_line.pk, Decimal("100.00"))],
        actor="staff",
    )
    method = PaymentMethodFactory(customer=customer)
    PaymentMethodFactory(customer=customer, last4="4444", brand="mastercard", is_default=False)
    token_create(
        membership=membership,
        name="ERP sync",
        scopes=[ApiScope.READ_INVOICES],
        expires_at=None,
        actor=owner,
    )

    endpoint = endpoint_create(
        membership=membership,
        url="https://erp.dana-networks.example/hooks/portal-billing-events",
        events=["invoice.finalized", "invoice.paid", "invoice.payment_failed"],
        description="ERP",
        actor=owner,
    )
    for n, codes in enumerate(([503, 500, 200], [None])):
        delivery = WebhookDelivery.objects.create(
            endpoint=endpoint,
            event_id=f"evt_1f0c6a2b9e4d7c35a8b1e{n:03d}",
            type="invoice.paid",
            audit_entry_id=n,
            object_api_id=f"in_{invoices['big_paid'].pk}",
            payload={},
            status="succeeded" if codes[-1] == 200 else "pending",
            attempts=len(codes),
            retry_until=datetime.datetime(2026, 6, 5, tzinfo=datetime.UTC),
            next_attempt_at=None
            if codes[-1] == 200
            else datetime.datetime(2026, 6, 2, tzinfo=datetime.UTC),
        )
        for i, code in enumerate(codes):
            WebhookAttempt.objects.create(
                delivery=delivery,
                at=datetime.datetime(2026, 6, 1, 9, i, tzinfo=datetime.UTC),
                response_code=code,
                error="" if code else "ConnectionRefusedError: [Errno 111] Connection refused",
            )

    # A Pay online checkout started from the pay link (no login) on an invoice of its own,
    # so the member's pay pages above stay as they are.
    link_checkout_token = pay_token(invoices["link_checkout"])
    number = invoices["link_checkout"].number
    link_checkout = payments.checkout_start(
        invoice_id=invoices["link_checkout"].pk,
        actor="pay link",
        success_url=f"{settings.SITE_URL}/invoices/{number}/pay/done/?token={link_checkout_token}",
        cancel_url=f"{settings.SITE_URL}/invoices/{number}/pay/cancelled/?token={link_checkout_token}",
    )
    # A charge of a 3-D Secure card waiting for the bank: the sandbox's confirmation page.
    secure_card = PaymentMethodFactory(customer=customer, last4="3184", is_default=False)
    with contextlib.suppress(AuthenticationRequired):  # what it says; the payment waits
        payments.invoice_pay_with_saved_method(
            invoice_id=invoices["waiting_3ds"].pk,
            payment_method_id=secure_card.provider_id,
            off_session=True,
            actor=owner,
        )
    waiting = invoices["waiting_3ds"].payments.get(status=PaymentStatus.REQUIRES_ACTION)
    back = f"{settings.SITE_URL}/invoices/{invoices['waiting_3ds'].number}"
    confirm_3ds = payments.payment_confirm_start(
        payment_id=waiting.pk,
        actor=owner,
        return_url=f"{back}/payments/{waiting.pk}/confirmed/",
        success_url=f"{back}/pay/done/",
        cancel_url=f"{back}/pay/cancelled/",
    )

    open_ = invoices["open"]
    paid = invoices["big_paid"]
    receipt = paid.payments.get()
    contract_id = open_.contract_id
    world = World(owner, viewer, lonely, membership, invoices, method)
    world.member_pages = [
        ("invoice-list", "/invoices/"),
        ("invoice-list-open", "/invoices/?status=open"),
        ("invoice-open", f"/invoices/{open_.number}/"),
        ("invoice-overdue", f"/invoices/{invoices['overdue'].number}/"),
        ("invoice-big", f"/invoices/{invoices['big'].number}/"),
        ("invoice-paid", f"/invoices/{paid.number}/"),
        ("invoice-refund", f"/invoices/{invoices['refund'].number}/"),
        ("invoice-void", f"/invoices/{invoices['void'].number}/"),
        ("invoice-draft", f"/invoices/{invoices['draft'].ref}/"),
        ("invoice-under-review", f"/invoices/{invoices['reported'].number}/"),
        ("invoice-report", f"/invoices/{open_.number}/report/"),
        ("contract-list", "/contracts/"),
        ("contract-detail", f"/contracts/{contract_id}/"),
        ("customer-switch", "/account/customer/"),
        ("activity", "/account/activity/"),
        ("billing-details", "/account/billing/"),
        ("activity-invoices", "/account/activity/?kind=invoices"),
        ("payment-methods", "/payment-methods/"),
        ("payment-method-remove", f"/payment-methods/{method.pk}/remove/"),
        ("api-tokens", "/settings/tokens/"),
        ("webhooks", "/settings/webhooks/"),
        ("webhook-detail", f"/settings/webhooks/{endpoint.pk}/"),
        ("pay-member", f"/invoices/{invoices['big'].number}/pay/"),
        ("sandbox-3ds", urlsplit(confirm_3ds).path),
        ("pay-member-paid", f"/invoices/{paid.number}/pay/"),
        ("paid-return", f"/invoices/{paid.number}/pay/done/"),
        ("pay-cancelled", f"/invoices/{open_.number}/pay/cancelled/"),
        ("receipt", f"/invoices/{paid.number}/payments/{receipt.pk}/receipt/"),
        ("not-found", "/invoices/INV-2099-999999/"),
        ("credit-note", f"/credit-notes/{credit_note.number}/"),
        ("statement", "/statements/?currency=EUR&start=2026-01-01&end=2026-06-05"),
    ]
    big_token = pay_token(invoices["big"])
    paid_token = pay_token(paid)
    world.link_pages = [
        ("hosted-invoice", f"/invoices/{invoices['big'].number}/pay/?token={big_token}"),
        ("hosted-invoice-paid", f"/invoices/{paid.number}/pay/?token={paid_token}"),
        ("hosted-paid-return", f"/invoices/{paid.number}/pay/done/?token={paid_token}"),
        (
            "hosted-cancelled",
            f"/invoices/{invoices['big'].number}/pay/cancelled/?token={big_token}",
        ),
        (
            "hosted-receipt",
            f"/invoices/{paid.number}/payments/{receipt.pk}/receipt/?token={paid_token}",
        ),
        # The sandbox's checkout as the link's holder reaches it (Continue to payment).
        ("hosted-sandbox-checkout", urlsplit(link_checkout).path),
    ]
    world.public_pages = [
        ("login", "/accounts/login/"),
        ("password-reset", "/accounts/password_reset/"),
        ("password-reset-sent", "/accounts/password_reset/done/"),
        ("password-reset-bad-link", "/accounts/reset/MQ/not-a-token/"),
        # The e-mail's link: Django moves the token into the session and redirects to
        # .../set-password/ (follow the redirect). LONELY logs in last of all in each suite,
        # and a log-in changes what the token is made of.
        (
            "password-reset-new",
            f"/accounts/reset/{urlsafe_base64_encode(force_bytes(lonely.pk))}/"
            f"{default_token_generator.make_token(lonely)}/",
        ),
        ("password-reset-complete", "/accounts/reset/done/"),
    ]
    world.viewer_pages = [
        ("viewer-invoice-list", "/invoices/"),
        ("viewer-forbidden", "/payment-methods/"),
        ("viewer-billing-details", "/account/billing/"),
    ]
    world.lonely_pages = [("no-customer", "/account/no-customer/")]
    world.member_forms = [
        FormPage(
            "api-token-created",
            "/settings/tokens/",
            "/settings/tokens/",
            {"name": "Monthly export", "scopes": [ApiScope.READ_INVOICES, ApiScope.PAY_INVOICES]},
            'form:has([name="scopes"]) button[type="submit"]',
        ),
        FormPage(
            "webhook-created",
            "/settings/webhooks/",
            "/settings/webhooks/",
            {
                "url": "https://accounting.dana-networks.example/integrations/portal/billing-events",
                "description": "ERP",
                "events": ["invoice.paid"],
            },
            'form:has([name="events"]) button[type="submit"]',
        ),
        FormPage(
            "webhook-secret",
            f"/settings/webhooks/{endpoint.pk}/",
            f"/settings/webhooks/{endpoint.pk}/secret/",
            {},
            'form[action$="/secret/"] button[type="submit"]',
        ),
    ]
    return world


class _VisibleText(HTMLParser):
    """The text a person reads: text nodes outside <script>/<style>, plus the <title>."""

    def __init__(self):
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        found = dict(attrs)
        if tag in ("input", "textarea") and found.get("type") != "hidden":
            self.parts += [found[n] for n in ("placeholder", "value") if found.get(n)]

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = _VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


TEMPLATE_SYNTAX = ("{#", "#}", "{%", "%}", "{{", "}}")


def template_syntax_in(text: str) -> list[str]:
    return [s for s in TEMPLATE_SYNTAX if s in text]
