import datetime
import importlib

import pytest
import time_machine
from django.conf import settings as django_settings
from django.utils import translation

from billing.api.models import ApiScope
from billing.api.tokens import token_create
from contracts.models import Membership
from tests.factories import CustomerFactory, MembershipFactory, UserFactory


@pytest.fixture(autouse=True)
def _media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"


@pytest.fixture(autouse=True)
def _english_outside_requests():
    """LocaleMiddleware activates each request's language in the thread and leaves it there
    (as Django does; the next request activates its own). A test that asked for a German
    page would leave German to the next test's service messages, so every test starts and
    ends in the default language."""
    translation.activate(django_settings.LANGUAGE_CODE)
    yield
    translation.activate(django_settings.LANGUAGE_CODE)


@pytest.fixture
def customer(db):
    return CustomerFactory()


@pytest.fixture
def owner(customer):
    return MembershipFactory(customer=customer).user


@pytest.fixture
def other_customer(db):
    return CustomerFactory(name="Someone Else Ltd")


@pytest.fixture
def staff(db):
    return UserFactory(username="staff", is_staff=True, is_superuser=True)


@pytest.fixture(autouse=True)
def _tax_rates_after_flush(request):
    """Transactional tests flush every table, data migrations included: put the rates and the
    staff groups back."""
    marker = request.node.get_closest_marker("django_db")
    if not (marker and marker.kwargs.get("transaction")):
        return
    request.getfixturevalue("transactional_db")
    from django.apps import apps

    importlib.import_module("billing.invoices.migrations.0002_tax_rates").add_rates(apps, None)
    importlib.import_module("billing.payments.migrations.0003_staff_groups").add_groups(apps)
    importlib.import_module(
        "billing.collections.migrations.0002_staff_group_permissions"
    ).add_permissions(apps)


@pytest.fixture
def make_token(db):
    def make(
        membership: Membership,
        scopes=(ApiScope.READ_INVOICES, ApiScope.PAY_INVOICES),
        expires_at=None,
    ):
        return token_create(
            membership=membership,
            name="test",
            scopes=list(scopes),
            expires_at=expires_at,
            actor="t",
        )

    return make


@pytest.fixture
def on_pages_day():
    """The customer-page tests' "now": 2026-06-05 12:00 UTC (pages_support.TODAY)."""
    with time_machine.travel(datetime.datetime(2026, 6, 5, 12, tzinfo=datetime.UTC), tick=False):
        yield
