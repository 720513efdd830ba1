"""The authentication backend: Django's ModelBackend, loading the memberships with the user.

Every customer page needs the logged-in user *and* the membership it acts through
(contracts.context). Fetched one after the other they are two round trips on every
request; joined they are one. The memberships are few per user, so the whole list comes
along and active_membership picks the chosen one from it.
"""

from django.conf import settings
from django.contrib.auth.backends import ModelBackend

from .context import by_customer_name
from .models import Membership


class MemberBackend(ModelBackend):
    def get_user(self, user_id):
        # Sorted in Python, not SQL: an ORDER BY over the join costs more to compile than
        # sorting a user's few memberships.
        # Rows other apps keep per customer ride along (settings.MEMBERSHIP_CUSTOMER_RELATED:
        # the invoice list's cache version) instead of costing a query of their own.
        related = [f"customer__{name}" for name in settings.MEMBERSHIP_CUSTOMER_RELATED]
        memberships = by_customer_name(
            Membership.objects.select_related("user", "customer", *related).filter(user_id=user_id)
        )
        if not memberships:
            user = super().get_user(user_id)  # staff without a customer
            if user is not None:
                user.loaded_memberships = []
            return user
        user = memberships[0].user
        for membership in memberships:
            membership.user = user  # one instance, as a single query would give
        user.loaded_memberships = memberships
        return user if self.user_can_authenticate(user) else None
