"""Response headers Django 5.2 does not set itself: Content-Security-Policy and
Permissions-Policy (and X-Frame-Options on static files).

HSTS, nosniff, Referrer-Policy and Cross-Origin-Opener-Policy come from Django's
SecurityMiddleware, X-Frame-Options from XFrameOptionsMiddleware (settings in
config/settings/base.py and production.py); this middleware adds what is missing so
that every response, static files and JSON included, carries the same policy.
"""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import patch_cache_control


def content_security_policy() -> str:
    """The CONTENT_SECURITY_POLICY setting (directive → sources) as one header value."""
    return "; ".join(
        f"{directive} {' '.join(sources)}".strip()
        for directive, sources in settings.CONTENT_SECURITY_POLICY.items()
    )


class SecurityHeadersMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # A view that needs a different policy sets its own header; it is kept.
        response.headers.setdefault("Content-Security-Policy", content_security_policy())
        response.headers.setdefault("Permissions-Policy", settings.PERMISSIONS_POLICY)
        # WhiteNoise answers static files before XFrameOptionsMiddleware runs.
        response.headers.setdefault("X-Frame-Options", settings.X_FRAME_OPTIONS)
        return response


class RequestGuardMiddleware:
    """Requests no view can serve get a clean 4xx before any view sees them.

    - A body over DATA_UPLOAD_MAX_MEMORY_SIZE: 413. Django raises RequestDataTooBig when
      request.body or request.POST is read, which CSRF checking and the views do at
      different points; the answer was a 400, or a 500 inside the API's own error
      handling. The declared length is what Django checks too.
    - A NUL character in the path (%00): 404. Paths name invoices by number, and
      PostgreSQL refuses NUL in a query's text (a DataError, so a 500).
    The API answers in its JSON error envelope.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if limit is not None and length > limit:
            return refuse(
                request, 413, "request_too_large", f"The request body exceeds {limit} bytes."
            )
        if "\x00" in request.path:
            return refuse(request, 404, "resource_missing", "Not found.")
        return self.get_response(request)


def refuse(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    if request.path.startswith("/api/"):
        error = {"type": "invalid_request_error", "code": code}
        return JsonResponse({"error": {**error, "message": message, "param": None}}, status=status)
    return HttpResponse(message, status=status, content_type="text/plain; charset=utf-8")


class PrivateCacheMiddleware:
    """A signed-in person's pages are theirs: `Cache-Control: private`, so no shared cache
    (a proxy, a CDN) keeps one customer's invoices for the next visitor.

    Only for authenticated requests; a stricter header a view set (no-store) is kept, and
    a `public` one is replaced. Anonymous pages (log-in, pay links) are left alone.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            current = response.headers.get("Cache-Control", "")
            if "private" not in current and "no-store" not in current:
                patch_cache_control(response, private=True)
        return response
