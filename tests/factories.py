"""factory_boy factories. Contracts and invoices are made through the services,
so tests exercise the same paths production does."""

import datetime
import itertools
from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from billing.invoices import services as billing
from billing.invoices.models import Invoice
from billing.payments.models import PaymentMethod
from contracts import services
from contracts.models import Customer, IPBlock, LeaseContract, Membership, Role

_blocks = itertools.count(1)


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}@example.com")
    email = factory.SelfAttribute("username")
    password = factory.PostGenerationMethodCall("set_password", "pw")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n} GmbH")
    email = factory.Sequence(lambda n: f"billing{n}@example.com")
    address_line1 = "Hauptstraße 1"
    postal_code = "10115"
    city = "Berlin"
    country = "DE"
    tax_id = ""


# Real-format tax ids whose check digits are valid (python-stdnum's own examples), and
# ones that fail in a known way. Tests use these, never made-up ids.
VALID_TAX_IDS = {
    "DE": "DE136695976",
    "AT": "ATU13585627",
    "FR": "FR40303265045",
    "PL": "PL8567346215",
    "GR": "EL094259216",
    "NL": "NL004495445B01",
    "IN": "27AAPFU0939F1ZV",
}


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    customer = factory.SubFactory(CustomerFactory)
    role = Role.OWNER


def make_block(prefix: str | None = None) -> IPBlock:
    if prefix is None:
        n = next(_blocks)
        prefix = f"10.{n // 256}.{n % 256}.0/24"
    return services.ipblock_create(prefix=prefix, registry="RIPE", actor="test")


def make_contract(
    customer: Customer | None = None,
    *,
    blocks: int = 1,
    price: str = "100.00",
    currency: str = "EUR",
    started_on: datetime.date = datetime.date(2026, 1, 1),
    anchor: int | None = None,
) -> LeaseContract:
    return services.contract_create(
        customer=customer or CustomerFactory(),
        block_ids=[make_block().pk for _ in range(blocks)],
        price_per_block=Decimal(price),
        currency=currency,
        started_on=started_on,
        billing_anchor_day=anchor,
        actor="test",
    )


def make_invoice(contract: LeaseContract | None = None, *, finalize: bool = True, **kw) -> Invoice:
    """The first period's invoice of a (new) contract."""
    contract = contract or make_contract(**kw)
    (invoice,) = billing.contract_bill_due_periods(
        contract_id=contract.pk, today=contract.next_billing_date, actor="test", finalize=finalize
    )
    return invoice


class PaymentMethodFactory(factory.django.DjangoModelFactory):
    """A saved sandbox card; last4 picks its behaviour (4242 pays, 0002 declines, 3184 3DS)."""

    class Meta:
        model = PaymentMethod

    customer = factory.SubFactory(CustomerFactory)
    provider = "sandbox"
    last4 = "4242"
    provider_id = factory.LazyAttributeSequence(lambda o, n: f"pm_sandbox_{o.last4}_{n}")
    brand = "visa"
    exp_month = 12
    exp_year = 2034
    is_default = True
