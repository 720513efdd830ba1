"""Log-in throttling: failed attempts are counted per username and client address.

After LOGIN_FAILURE_LIMIT failures within LOGIN_FAILURE_WINDOW seconds the pair is
locked for LOGIN_LOCKOUT_SECONDS: the form then refuses even the right password and
says how long to wait. Counting per username *and* address keeps one attacker from
locking a customer out from everywhere, while still stopping password guessing.
The same counter guards API bearer tokens (billing.api.views), per address.

The client address comes from TRUSTED_PROXY_HOPS (client_ip): behind the TLS proxy
every request's REMOTE_ADDR is the proxy's, and counting per proxy would lock everybody
out together. Every lock that starts is also written to the Lockout table, where staff
see it and lift it (admin, `manage.py lockouts`).
"""

import datetime
import hashlib
import ipaddress
import logging
import math
import time

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.contrib.auth.views import LoginView, LogoutView, PasswordResetView
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from core.audit import Actor, audit_record

from .models import Lockout

logger = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    """An IP address as written by a proxy (a port and IPv6 brackets allowed), normalised."""
    value = value.strip()
    if value.startswith("[") and "]" in value:  # [2001:db8::1]:443
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # 203.0.113.9:51234
        value = value.partition(":")[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def client_ip(request: HttpRequest | None) -> str:
    """The client's address, counting TRUSTED_PROXY_HOPS proxies in front of the portal.

    With no trusted proxy (the default) it is REMOTE_ADDR. Behind N proxies it is the
    N-th entry of X-Forwarded-For from the right: each proxy appends the address it saw,
    so the entries left of that one came from the client and are not believed. gunicorn
    does not rewrite REMOTE_ADDR (--forwarded-allow-ips only governs the scheme headers),
    hence this setting.
    """
    if request is None:
        return ""
    remote = request.META.get("REMOTE_ADDR", "")
    hops = settings.TRUSTED_PROXY_HOPS
    if hops <= 0:
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    forwarded = [part for part in header.split(",") if part.strip()]
    if not forwarded:
        return remote  # reached us without passing the proxy
    # Fewer entries than proxies: every entry was written by one of ours; take the first.
    candidate = forwarded[-min(hops, len(forwarded))]
    return _address(candidate) or remote


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
        logger.warning("Throttle %s: %s locked after %s failures", self.prefix, identity, count)
        self._register(identity, count)
        return self.lockout

    def _register(self, identity: str, count: int) -> None:
        """Write the lock where staff can see it; the lock holds even if this fails."""
        now = timezone.now()
        try:
            with transaction.atomic():
                Lockout.objects.update_or_create(
                    kind=self.prefix,
                    identity=identity[:400],
                    defaults={
                        "failures": count,
                        "locked_until": now + datetime.timedelta(seconds=self.lockout),
                    },
                )
                # Old rows are history nobody needs; keep the table to the recent ones.
                Lockout.objects.filter(locked_until__lt=now - datetime.timedelta(days=7)).delete()
        except DatabaseError:
            logger.exception("Lockout of %s not recorded", identity)

    def reset(self, identity: str) -> None:
        try:
            cache.delete_many(list(self._keys(identity)))
        except Exception:
            logger.exception("Throttle %s unavailable; not reset", self.prefix)


def lockout_clear(*, lockout_id: int, actor: Actor) -> bool:
    """Lift a lockout: the cache's lock and failure count, and its row.

    Idempotent: a lockout already cleared (no row) returns False and changes nothing.
    """
    with transaction.atomic():
        lockout = Lockout.objects.select_for_update().filter(pk=lockout_id).first()
        if lockout is None:
            return False
        FailureCounter(lockout.kind, limit=0, window=0, lockout=0).reset(lockout.identity)
        audit_record(
            actor=actor,
            action="lockout.cleared",
            target=lockout,
            before={"identity": lockout.identity, "locked_until": lockout.locked_until},
        )
        lockout.delete()
    return True


def active_lockouts():
    return Lockout.objects.filter(locked_until__gt=timezone.now())


def login_counter() -> FailureCounter:
    return FailureCounter(
        "login",
        limit=settings.LOGIN_FAILURE_LIMIT,
        window=settings.LOGIN_FAILURE_WINDOW,
        lockout=settings.LOGIN_LOCKOUT_SECONDS,
    )


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes}


LOCKED_MESSAGE = _(
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
        "invalid_login": _(
            "Please enter a correct e-mail address and password. The password is case-sensitive."
        ),
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["username"]
        field.label = _("E-mail")
        field.widget.attrs.update({"autocomplete": "username", "inputmode": "email"})


class EmailPasswordResetForm(PasswordResetForm):
    """Django's reset form with the field named as on the log-in form."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].label = _("E-mail")


class ConfirmingLogoutView(LogoutView):
    """Django's LogoutView that says it worked: the log-in page it leads to tells so."""

    def post(self, request, *args, **kwargs) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.success(request, gettext("You are logged out."))
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


def password_reset_counters() -> tuple[FailureCounter, FailureCounter]:
    """(per client address, per e-mail address): each reset form sent counts once."""
    window = settings.PASSWORD_RESET_WINDOW
    return (
        FailureCounter(
            "password-reset-address",
            limit=settings.PASSWORD_RESET_LIMIT_PER_ADDRESS,
            window=window,
            lockout=window,
        ),
        FailureCounter(
            "password-reset-email",
            limit=settings.PASSWORD_RESET_LIMIT_PER_EMAIL,
            window=window,
            lockout=window,
        ),
    )


RESET_LOCKED_MESSAGE = _(
    "Too many password reset requests from your network. Please try again in %(wait)s."
)


class ThrottledPasswordResetView(PasswordResetView):
    """Django's reset form, with the e-mails it sends limited per address and per e-mail.

    Per client address: past the limit the form says to wait (429) and sends nothing.
    Per e-mail address: past the limit the answer is the usual "check your inbox" page and
    nothing is sent, so the form neither floods one inbox nor tells who has an account.
    """

    def form_valid(self, form):
        by_address, by_email = password_reset_counters()
        address = client_ip(self.request)
        left = by_address.locked_for(address)
        if left is not None:
            form.add_error(None, RESET_LOCKED_MESSAGE % {"wait": _minutes(left)})
            response = self.form_invalid(form)
            response.status_code = 429
            return response
        by_address.fail(address)
        email = form.cleaned_data["email"].strip().lower()
        if by_email.locked_for(email) is not None:
            logger.warning("Password reset for an address over its limit; not sent")
            return HttpResponseRedirect(self.get_success_url())
        by_email.fail(email)
        return super().form_valid(form)
