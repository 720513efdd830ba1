from decimal import Decimal

import pytest
from django.core.cache import cache

from billing.api.models import ApiScope, WebhookDelivery, WebhookEndpoint
from billing.api.tokens import token_create
from billing.invoices.credit_notes import credit_note_issue
from billing.payments.models import PaymentMethod
from contracts.models import Role
from tests.factories import CustomerFactory, MembershipFactory, make_contract, make_invoice


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


class World:
    """Customer A with an owner, a viewer, a contract, an open invoice with a credit note, a
    saved card and an API token; customer B with its own owner, contract and invoice."""


@pytest.fixture
def world(db):
    w = World()
    w.customer = CustomerFactory(name="Alpha Secret Networks")
    w.owner = MembershipFactory(customer=w.customer, role=Role.OWNER)
    w.viewer = MembershipFactory(customer=w.customer, role=Role.VIEWER)
    w.contract = make_contract(w.customer, blocks=1)
    w.block = w.contract.blocks.get()
    w.invoice = make_invoice(w.contract)
    w.credit_note = credit_note_issue(
        invoice_id=w.invoice.pk, amount=Decimal("1.00"), reason="r", settle="credit", actor="t"
    )
    w.method = PaymentMethod.objects.create(
        customer=w.customer,
        provider="sandbox",
        provider_id="pm_alpha_secret",
        brand="visa",
        last4="9731",
        exp_month=12,
        exp_year=2040,
        is_default=True,
    )
    w.token, w.token_secret = token_create(
        membership=w.owner,
        name="alpha-erp-sync",
        scopes=list(ApiScope),
        expires_at=None,
        actor="t",
    )
    w.webhook = WebhookEndpoint.objects.create(
        customer=w.customer,
        url="https://alpha-secret-hooks.example/portal",
        events=["invoice.paid"],
        secret="whsec_alpha_secret_signing_key",
    )
    w.delivery = WebhookDelivery.objects.create(
        endpoint=w.webhook,
        event_id="evt_alpha_secret",
        type="invoice.paid",
        audit_entry_id=1,
        object_api_id=f"in_{w.invoice.pk}",
        payload={"id": "evt_alpha_secret"},
        status="succeeded",
        retry_until=w.invoice.created_at,
    )
    w.other_customer = CustomerFactory(name="Bravo Ltd")
    w.other = MembershipFactory(customer=w.other_customer, role=Role.OWNER)
    w.other_invoice = make_invoice(make_contract(w.other_customer))
    w.other_token, w.other_token_secret = token_create(
        membership=w.other,
        name="bravo-sync",
        scopes=list(ApiScope),
        expires_at=None,
        actor="t",
    )
    return w
