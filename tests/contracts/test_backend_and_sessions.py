"""The user comes with their memberships in one query (contracts.backends), and sessions
are read from the cache without depending on it (config.sessions)."""

import pytest
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client, RequestFactory

from config import sessions
from contracts.backends import MemberBackend
from contracts.context import SESSION_KEY, active_membership, memberships_of
from contracts.models import Role
from tests.factories import CustomerFactory, MembershipFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_the_user_and_their_memberships_are_one_query(django_assert_num_queries):
    user = UserFactory()
    zeta = MembershipFactory(user=user, customer=CustomerFactory(name="Zeta Ltd"))
    alpha = MembershipFactory(
        user=user, customer=CustomerFactory(name="Alpha AG"), role=Role.VIEWER
    )
    beta = MembershipFactory(user=user, customer=CustomerFactory(name="beta networks"))
    with django_assert_num_queries(1):
        loaded = MemberBackend().get_user(user.pk)
        names = [m.customer.name for m in loaded.loaded_memberships]
        assert all(m.user is loaded for m in loaded.loaded_memberships)
    assert loaded == user
    assert names == ["Alpha AG", "beta networks", "Zeta Ltd"]  # as people read them
    assert [m.pk for m in loaded.loaded_memberships] == [alpha.pk, beta.pk, zeta.pk]
    assert memberships_of(user) == loaded.loaded_memberships  # the same order without it


def test_the_chosen_customer_is_picked_from_the_loaded_memberships(django_assert_num_queries):
    user = UserFactory()
    MembershipFactory(user=user, customer=CustomerFactory(name="Alpha AG"))
    zeta = MembershipFactory(user=user, customer=CustomerFactory(name="Zeta Ltd"))
    request = RequestFactory().get("/")
    request.user = MemberBackend().get_user(user.pk)
    request.session = {SESSION_KEY: zeta.customer_id}
    with django_assert_num_queries(0):
        assert active_membership(request) == zeta
    request.session = {SESSION_KEY: CustomerFactory().pk}  # no longer a member there
    with django_assert_num_queries(0):
        assert active_membership(request).customer.name == "Alpha AG"


def test_staff_without_a_customer_and_inactive_users():
    staff = UserFactory(is_staff=True)
    assert MemberBackend().get_user(staff.pk).loaded_memberships == []
    inactive = MembershipFactory(user=UserFactory(is_active=False)).user
    assert MemberBackend().get_user(inactive.pk) is None
    assert MemberBackend().get_user(10**9) is None


class _DownCache:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise ConnectionError("cache down")

        return fail

    def __contains__(self, key):
        raise ConnectionError("cache down")


def test_sessions_work_from_the_database_while_the_cache_is_down(monkeypatch):
    store = sessions.SessionStore()
    monkeypatch.setattr(store._cache, "_cache", _DownCache())
    store["answer"] = 42
    store.save()
    assert Session.objects.filter(session_key=store.session_key).exists()

    again = sessions.SessionStore(store.session_key)
    monkeypatch.setattr(again._cache, "_cache", _DownCache())
    assert again["answer"] == 42
    assert again.exists(store.session_key)
    again.flush()
    assert not Session.objects.filter(session_key=store.session_key).exists()


def test_a_session_stays_in_the_cache_for_minutes_not_weeks(monkeypatch):
    seen = []
    monkeypatch.setattr(cache, "set", lambda key, value, timeout=None: seen.append(timeout))
    store = sessions.SessionStore()
    store["x"] = 1
    store.save()
    assert seen and set(seen) == {sessions.CACHE_SECONDS}
    assert store.get_expiry_age() > sessions.CACHE_SECONDS


def test_logging_out_ends_the_cached_session_too(customer, owner):
    browser = Client()
    browser.force_login(owner)
    assert browser.get("/invoices/").status_code == 200
    key = browser.cookies["sessionid"].value
    assert cache.get(sessions.SessionStore.cache_key_prefix + key) is not None
    browser.post("/accounts/logout/")
    assert cache.get(sessions.SessionStore.cache_key_prefix + key) is None
    thief = Client()
    thief.cookies["sessionid"] = key
    assert thief.get("/invoices/").status_code == 302
