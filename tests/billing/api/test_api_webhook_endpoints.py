"""GET /api/webhook_endpoints: the customer's endpoints, never their secrets."""

import pytest

from billing.api import webhooks
from billing.api.models import ApiScope
from contracts.models import Role
from tests.factories import MembershipFactory

from .conftest import _validator

pytestmark = pytest.mark.django_db


@pytest.fixture
def member(customer):
    return MembershipFactory(customer=customer, role=Role.OWNER)


def _endpoint(membership, n: int):
    return webhooks.endpoint_create(
        membership=membership,
        url=f"https://erp.example.com/hooks/{n}",
        events=["invoice.paid"],
        description="",
        actor=membership.user,
    )


def test_lists_the_customers_endpoints_without_secrets(api, member, make_token, other_customer):
    mine = [_endpoint(member, n) for n in range(3)]
    webhooks.endpoint_set_enabled(
        endpoint_id=mine[0].pk, membership=member, enabled=False, actor=member.user
    )
    theirs = _endpoint(MembershipFactory(customer=other_customer, role=Role.OWNER), 9)
    raw = make_token(member, scopes=[ApiScope.READ_WEBHOOK_ENDPOINTS])[1]
    response = api("get", "/api/webhook_endpoints", raw, data={"limit": 2})
    assert response.status_code == 200
    body = response.json()
    _validator("WebhookEndpointList").validate(body)
    assert [row["id"] for row in body["data"]] == [f"we_{mine[2].pk}", f"we_{mine[1].pk}"]
    assert body["has_more"]
    rest = api(
        "get", "/api/webhook_endpoints", raw, data={"starting_after": body["data"][-1]["id"]}
    ).json()
    assert [row["id"] for row in rest["data"]] == [f"we_{mine[0].pk}"]
    assert rest["data"][0]["status"] == "disabled" and rest["data"][0]["disabled_reason"]
    text = response.content.decode() + str(rest)
    assert "whsec_" not in text and theirs.url not in text
    assert all(e.secret not in text for e in mine)


def test_needs_its_scope(api, member, make_token, assert_error_schema):
    raw = make_token(member, scopes=[ApiScope.READ_INVOICES])[1]
    assert_error_schema(api("get", "/api/webhook_endpoints", raw), 403, "missing_scope")
    raw = make_token(member, scopes=[ApiScope.READ_WEBHOOK_ENDPOINTS])[1]
    error = assert_error_schema(
        api("get", "/api/webhook_endpoints", raw, data={"starting_after": "in_1"}), 400
    )
    assert error["param"] == "starting_after"
