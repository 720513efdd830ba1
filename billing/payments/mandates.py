"""The debit mandate wording a customer accepts when saving a bank account.

Stored on the PaymentMethod as it was when accepted (PaymentMethod.mandate_text), so the
payment methods page shows what the customer agreed to even after this wording changes.
Stripe Checkout shows its own copy of the same authorisation; the provider's mandate object
carries the reference and the acceptance time, not the text.
"""

from django.conf import settings
from django.utils.translation import gettext_lazy as _

SEPA_MANDATE = _(
    "By providing your IBAN and confirming, you authorise (A) {creditor} and its payment "
    "service provider to send instructions to your bank to debit your account and (B) your "
    "bank to debit your account in accordance with those instructions. As part of your "
    "rights, you are entitled to a refund from your bank under the terms and conditions of "
    "your agreement with your bank. A refund must be claimed within 8 weeks starting from "
    "the date on which your account was debited. Your rights are explained in a statement "
    "that you can obtain from your bank."
)
ACH_MANDATE = _(
    "By saving your bank account, you authorise {creditor} to debit the account for any "
    "amount owed for charges arising from your use of its services, until this "
    "authorisation is revoked. You may amend or cancel this authorisation at any time by "
    "removing the account or by notifying {creditor} with 30 (thirty) days notice."
)


def mandate_text_for(method_type: str) -> str:
    """The wording for a bank method type ("sepa_debit", "us_bank_account"); "" for cards."""
    template = {"sepa_debit": SEPA_MANDATE, "us_bank_account": ACH_MANDATE}.get(method_type)
    if template is None:
        return ""
    return str(template).format(creditor=settings.SELLER["name"])
