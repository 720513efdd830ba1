"""The portal's URLs plus static-file routes, so the benchmark compares like with like:
the same bytes anonymously (django.views.static.serve) and behind the same login and
customer lookup the PDF view does (member_required), and the PDF view with its earlier
ORM lookup (the baseline of the lookup change)."""

from django.conf import settings
from django.urls import path
from django.views.static import serve

from billing.invoices.documents.views import _pdf_response
from billing.invoices.selectors import invoice_for_customer_or_404
from config.urls import urlpatterns as portal_urlpatterns
from contracts.context import member_required


def _serve(request, path):
    return serve(request, path, document_root=settings.BENCH_STATIC_DIR)


@member_required()
def _pdf_with_orm_lookup(request, number):
    """The download as it was before issue 20's lookup change (ORM, .only()): the A/B arm."""
    return _pdf_response(request, invoice_for_customer_or_404(request.customer, number, light=True))


urlpatterns = [
    *portal_urlpatterns,
    path("bench-static/<path:path>", _serve),
    path("bench-member-static/<path:path>", member_required()(_serve)),
    path("bench-pdf-orm/<str:number>/", _pdf_with_orm_lookup),
]
