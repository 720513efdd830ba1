"""The portal's URLs plus static-file routes, so the benchmark compares like with like:
the same bytes anonymously (django.views.static.serve) and behind the same login and
customer lookup the PDF view does (member_required)."""

from django.conf import settings
from django.urls import path
from django.views.static import serve

from config.urls import urlpatterns as portal_urlpatterns
from contracts.context import member_required


def _serve(request, path):
    return serve(request, path, document_root=settings.BENCH_STATIC_DIR)


urlpatterns = [
    *portal_urlpatterns,
    path("bench-static/<path:path>", _serve),
    path("bench-member-static/<path:path>", member_required()(_serve)),
]
