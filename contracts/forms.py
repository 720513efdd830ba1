"""Forms of the customer pages. Validation itself lives in the services
(customer_details_clean), so the page and admin refuse the same input alike."""

import re

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .models import Customer, DocumentLanguage
from .services import BILLING_DETAIL_FIELDS, CUSTOMER_FIELDS, customer_details_clean
from .taxids import country_choices


def split_emails(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", text or "") if part]


class EmailListField(forms.CharField):
    """Several addresses in one box: one per line, or separated by commas."""

    widget = forms.Textarea(attrs={"rows": 3})

    def prepare_value(self, value):
        return "\n".join(value) if isinstance(value, list) else value

    def to_python(self, value):
        return split_emails(super().to_python(value))


class BillingDetailsForm(forms.Form):
    name = forms.CharField(label=_("Legal name"), max_length=200)
    address_line1 = forms.CharField(label=_("Address"), max_length=200, required=False)
    address_line2 = forms.CharField(label=_("Address (line 2)"), max_length=200, required=False)
    postal_code = forms.CharField(label=_("Postal code"), max_length=20, required=False)
    city = forms.CharField(label=_("City"), max_length=100, required=False)
    state = forms.CharField(label=_("State or region"), max_length=100, required=False)
    country = forms.ChoiceField(label=_("Country"), choices=())
    email = forms.EmailField(
        label=_("Billing e-mail"),
        help_text=_(
            "Invoices, reminders and receipts go here; this address is printed on invoices."
        ),
    )
    billing_cc_emails = EmailListField(
        label=_("Further billing e-mails"),
        required=False,
        help_text=_(
            "Everyone here gets every invoice, reminder and receipt too. "
            "One per line or separated by commas."
        ),
    )
    purchase_order_reference = forms.CharField(
        label=_("Purchase order reference"),
        max_length=100,
        required=False,
        help_text=_("Your order number, printed on every invoice."),
    )
    buyer_reference = forms.CharField(
        label=_("Buyer reference (Leitweg-ID)"),
        max_length=100,
        required=False,
        help_text=_("For German public bodies: the Leitweg-ID e-invoices are routed by."),
    )
    tax_id = forms.CharField(
        label=_("VAT id or GSTIN"),
        max_length=40,
        required=False,
        help_text=_(
            "EU businesses: your VAT number with its country prefix (Greece: EL). "
            "India: your 15-character GSTIN."
        ),
    )
    document_language = forms.ChoiceField(
        label=_("Language of documents"), choices=DocumentLanguage.choices
    )

    def __init__(self, *args, customer: Customer, **kwargs):
        initial = {f: getattr(customer, f) for f in BILLING_DETAIL_FIELDS}
        super().__init__(*args, initial=initial, **kwargs)
        self.customer = customer
        self.fields["country"].choices = [("", gettext("Choose a country")), *country_choices()]

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        current = {f: getattr(self.customer, f) for f in CUSTOMER_FIELDS}
        try:
            cleaned = customer_details_clean({**current, **data})
        except ValidationError as exc:
            for field_name, messages in exc.message_dict.items():
                self.add_error(field_name if field_name in self.fields else None, messages)
            return data
        return {f: cleaned[f] for f in BILLING_DETAIL_FIELDS}
