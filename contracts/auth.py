"""Log-in throttling: failed attempts are counted per username and client address.

After LOGIN_FAILURE_LIMIT failures within LOGIN_FAILURE_WINDOW seconds the pair is
locked for LOGIN_LOCKOUT_SECONDS: the form then refuses even the right password and
says how long to wait. Counting per username *and* address keeps one attacker from
locking a customer out from everywhere, while still stopping password guessing.
The same counter guards API bearer tokens (billing.api.views), per address.
"""

import hashlib
import logging
import math
import time

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.contrib.auth.views import LoginView, LogoutView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse

logger = logging.getLogger(__name__)


def client_ip(request: HttpRequest | None) -> str:
    """The peer address. Behind a proxy, the proxy must set REMOTE_ADDR (gunicorn
    --forwarded-allow-ips); X-Forwarded-For is not trusted here because anyone can send it."""
    if request is None:
        return ""
    return request.META.get("REMOTE_ADDR", "")


class FailureCounter:
    """A cache-based counter of failures per identity with a lockout.

    If the cache is down, nothing is locked (and it is logged): an outage of Redis
    must not lock every customer out of their invoices.
    """

    def __init__(self, prefix: str, *, limit: int, window: int, lockout: int) -> None:
        self.prefix = prefix
        self.limit = limit
        self.window = window
        self.lockout = lockout

    def _keys(self, identity: str) -> tuple[str, str]:
        digest = hashlib.sha256(identity.encode()).hexdigest()
        return f"{self.prefix}:fail:{digest}", f"{self.prefix}:lock:{digest}"

    def locked_for(self, identity: str) -> int | None:
        """Seconds left on the lock, or None when the identity may try."""
        _, lock_key = self._keys(identity)
        try:
            until = cache.get(lock_key)
        except Exception:
            logger.exception("Throttle %s unavailable; not locking", self.prefix)
            return None
        if until is None:
            return None
        left = math.ceil(until - time.time())
        return left if left > 0 else None

    def fail(self, identity: str) -> int | None:
        """Count one failure; the seconds of the lock if this one started it, else None."""
        fail_key, lock_key = self._keys(identity)
        try:
            cache.add(fail_key, 0, timeout=self.window)
            count = cache.incr(fail_key)
            if count < self.limit:
                return None
            cache.set(lock_key, time.time() + self.lockout, timeout=self.lockout)
            cache.delete(fail_key)
        except Exception:
            logger.exception("Throttle %s unavailable; not counting", self.prefix)
            return None
        logger.warning("Throttle %s: locked after %s failures", self.prefix, count)
        return self.lockout

    def reset(self, identity: str) -> None:
        try:
            cache.delete_many(list(self._keys(identity)))
        except Exception:
            logger.exception("Throttle %s unavailable; not reset", self.prefix)


def login_counter() -> FailureCounter:
    return FailureCounter(
        "login",
        limit=settings.LOGIN_FAILURE_LIMIT,
        window=settings.LOGIN_FAILURE_WINDOW,
        lockout=settings.LOGIN_LOCKOUT_SECONDS,
    )


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "1 minute" if minutes == 1 else f"{minutes} minutes"


LOCKED_MESSAGE = (
    "Too many failed log-in attempts for this account from your network. "
    "For your security, log-in is locked; try again in %(wait)s or reset your password."
)


class ThrottleMixin:
    """For an AuthenticationForm: refuse while locked, count failures, reset on success."""

    error_messages = {**AuthenticationForm.error_messages, "locked": LOCKED_MESSAGE}

    def _identity(self) -> str:
        username = (self.cleaned_data.get("username") or "").strip().lower()
        return f"{username}|{client_ip(self.request)}"

    def _locked_error(self, seconds: int) -> forms.ValidationError:
        return forms.ValidationError(
            self.error_messages["locked"], code="locked", params={"wait": _minutes(seconds)}
        )

    def clean(self):
        counter = login_counter()
        identity = self._identity()
        left = counter.locked_for(identity)
        if left is not None:
            raise self._locked_error(left)
        try:
            cleaned = super().clean()
        except forms.ValidationError:
            started = counter.fail(identity)
            if started is not None:
                raise self._locked_error(started) from None
            raise
        counter.reset(identity)
        return cleaned


class ThrottledAuthenticationForm(ThrottleMixin, AuthenticationForm):
    """The customers' log-in form: customers are known by their e-mail address, so the
    field says so (Django would name it after the model field, "Username")."""

    error_messages = {
        **ThrottleMixin.error_messages,
        "invalid_login": "Please enter a correct e-mail address and password. "
        "The password is case-sensitive.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.label = "E-mail"
        field.widget.attrs.update({"autocomplete": "username", "inputmode": "email"})


class EmailPasswordResetForm(PasswordResetForm):
    """Django's reset form with the field named as on the log-in form."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].label = "E-mail"


class ConfirmingLogoutView(LogoutView):
    """Django's LogoutView that says it worked: the log-in page it leads to tells so."""

    def post(self, request, *args, **kwargs) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.success(request, "You are logged out.")
        return response


class ThrottledAdminAuthenticationForm(ThrottleMixin, AdminAuthenticationForm):
    error_messages = {**AdminAuthenticationForm.error_messages, "locked": LOCKED_MESSAGE}


class ThrottledLoginView(LoginView):
    """Django's LoginView with the throttled form; a locked attempt answers 429."""

    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = False

    def form_invalid(self, form: AuthenticationForm) -> HttpResponse:
        response = super().form_invalid(form)
        if any(e.code == "locked" for e in form.errors.as_data().get("__all__", [])):
            response.status_code = 429
        return response
