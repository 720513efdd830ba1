from django import forms
from django.utils.translation import gettext_lazy as _

from .models import ReportReason
from .services import REPORT_CORRECTION_MAX, REPORT_DESCRIPTION_MAX


class InvoiceReportForm(forms.Form):
    reason = forms.ChoiceField(
        label=_("What is wrong?"), choices=ReportReason.choices, widget=forms.RadioSelect
    )
    description = forms.CharField(
        label=_("Describe the problem"),
        max_length=REPORT_DESCRIPTION_MAX,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_("Which lines, amounts or dates are wrong, and why."),
    )
    expected_correction = forms.CharField(
        label=_("Expected correction"),
        max_length=REPORT_CORRECTION_MAX,
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("Optional: what the invoice should say instead."),
    )

    def clean_description(self) -> str:
        value = self.cleaned_data["description"].strip()
        if not value:
            raise forms.ValidationError(_("Please describe the problem."))
        return value
