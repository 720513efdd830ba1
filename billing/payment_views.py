"""Placeholder: the payments issue builds Pay online and payment methods."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse(
        "Online payment is not available yet.", status=501, content_type="text/plain"
    )


invoice_pay = payment_methods = _todo
