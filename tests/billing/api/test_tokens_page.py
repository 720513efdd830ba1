import hashlib

import pytest

from billing.api.models import ApiToken
from contracts.models import Role
from core.models import AuditEntry
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db


def test_owner_creates_a_token_whose_secret_is_shown_once_and_stored_hashed(client, owner):
    client.force_login(owner)
    page = client.post(
        "/settings/tokens/", {"name": "ERP", "scopes": ["read:invoices", "pay:invoices:pay"]}
    )
    assert page.status_code == 200
    secret = page.context["secret"]
    assert secret.startswith("ipl_") and secret in page.content.decode()
    token = ApiToken.objects.get()
    assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in str(ApiToken.objects.values().get())
    again = client.get("/settings/tokens/").content.decode()
    assert secret not in again and token.prefix in again
    assert AuditEntry.objects.filter(action="api_token.created").exists()


def test_bad_token_form_changes_nothing(client, owner):
    client.force_login(owner)
    page = client.post(
        "/settings/tokens/",
        {"name": "", "scopes": ["admin:everything"], "expires_on": "2001-01-01"},
    )
    assert page.status_code == 200
    assert page.context["form"].errors.keys() >= {"name", "scopes", "expires_on"}
    assert not ApiToken.objects.exists()


def test_revoke_and_foreign_revoke(client, owner, other_customer):
    client.force_login(owner)
    client.post("/settings/tokens/", {"name": "x", "scopes": ["read:invoices"]})
    token = ApiToken.objects.get()
    stranger = MembershipFactory(customer=other_customer)
    client.force_login(stranger.user)
    assert client.post(f"/settings/tokens/{token.pk}/revoke/").status_code == 404
    client.force_login(owner)
    assert client.post(f"/settings/tokens/{token.pk}/revoke/").status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_viewers_cannot_manage_tokens_and_anonymous_must_log_in(client, customer):
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    assert client.get("/settings/tokens/").status_code == 302
    client.force_login(viewer)
    assert client.get("/settings/tokens/").status_code == 403
    assert (
        client.post("/settings/tokens/", {"name": "x", "scopes": ["read:invoices"]}).status_code
        == 403
    )
    assert not ApiToken.objects.exists()


def test_the_page_lists_every_scope_with_what_it_allows(client, customer):
    from django.utils.html import escape

    from billing.api.models import SCOPE_ALLOWS, ApiScope
    from contracts.models import Role
    from tests.factories import MembershipFactory

    owner = MembershipFactory(customer=customer, role=Role.OWNER)
    client.force_login(owner.user)
    html = client.get("/settings/tokens/").content.decode()
    assert set(SCOPE_ALLOWS) == set(ApiScope)
    for scope, allows in SCOPE_ALLOWS.items():
        assert f"<dt><code>{scope}</code></dt>" in html
        assert escape(allows[1:]) in html
    assert 'href="/api/docs' in html
