"""The portal's URLs plus a trivial POST (one query, no CSRF) and a trivial GET: the
baselines the webhook intake (bench/webhook_intake.py) and the load run
(bench/load_run.py) are compared with through the same gunicorn, middleware and database
connection."""

from django.db import connection
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as portal_urlpatterns


@csrf_exempt
def trivial_post(request):
    request.body  # noqa: B018 - read the body as the webhook does
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return HttpResponse("ok", content_type="text/plain")


def trivial_get(request):
    """The load run's baseline: one query through the same stack, nothing rendered."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [
    *portal_urlpatterns,
    path("bench/trivial-post/", trivial_post),
    path("bench/trivial-get/", trivial_get),
]
