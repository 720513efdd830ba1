"""Property-based run of the OpenAPI document against the app (bounded: few examples, no
deadline). Finds 5xx, responses that break the schema, and requests that skip auth."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings

from billing.models import PaymentMethod
from contracts.models import Role
from tests.factories import MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db


@pytest.fixture
def api_schema(db):
    # Like Django's test client: keep the test's transaction open across WSGI requests.
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


@pytest.fixture
def bearer(customer, make_token):
    membership = MembershipFactory(customer=customer, role=Role.OWNER)
    make_invoice(customer=customer)
    PaymentMethod.objects.create(
        customer=customer, provider="sandbox", provider_id="pm_card_visa", brand="visa",
        last4="4242", exp_month=12, exp_year=2030, is_default=True,
    )  # fmt: skip
    return {"Authorization": f"Bearer {make_token(membership)[1]}"}


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_schema(case, bearer):
    case.call_and_validate(headers=bearer)
