"""Placeholder: the customer pages issue builds these views."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("Not built yet.", status=501, content_type="text/plain")


invoice_list = invoice_detail = invoice_export_csv = invoice_download_zip = _todo
