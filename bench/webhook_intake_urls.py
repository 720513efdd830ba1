"""The portal's URLs plus a trivial POST (one query, no CSRF), the baseline the webhook
intake is compared with through the same gunicorn, middleware and database connection."""

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


urlpatterns = [*portal_urlpatterns, path("bench/trivial-post/", trivial_post)]
