"""The API's objects as pydantic schemas: django-ninja generates the OpenAPI document
from them, and the responses are validated against the same classes.

Field names and shapes are Stripe's (shared/seeds/002): amounts in minor units,
lowercase currencies, Unix seconds. The class names are the component names in the
generated document (`#/components/schemas/Invoice`, `.../Error`).
"""

import datetime
from typing import Literal

from django.conf import settings
from ninja import Field, Schema
from pydantic import ConfigDict, StrictBool, StrictStr, field_validator
from pydantic_core import PydanticCustomError

from contracts.models import Customer as CustomerModel
from core.activity import KINDS as ACTIVITY_KINDS

from .serializers import (
    EXPANDABLE,
    STATUS_FOR_API,
    parse_credit_note_api_id,
    parse_invoice_api_id,
    report_reasons,
)

MAX_LIMIT = 100
MAX_UNIX_TIME = 32503680000  # 3000-01-01
API_STATUSES = tuple(sorted(set(STATUS_FOR_API.values())))
CURSOR = {"pattern": "^in_[0-9]{1,17}$"}
UNIX_TIME = {"minimum": 0, "maximum": MAX_UNIX_TIME}
EXPAND_ITEMS = {"items": {"type": "string", "enum": list(EXPANDABLE)}}


def _invalid(message: str) -> PydanticCustomError:
    # The error type is the envelope's code; billing.api.views maps it straight through.
    return PydanticCustomError("parameter_invalid", message)


def check_expand(values: list[str], *, param: str = "expand") -> list[str]:
    unknown = [v for v in values if v not in EXPANDABLE]
    if unknown:
        raise _invalid(f"Cannot expand {unknown[0]!r}; expandable: {', '.join(EXPANDABLE)}.")
    return values


def _storable_text(value: str) -> bool:
    """Free text PostgreSQL can store (line breaks allowed): no NUL, no lone surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Address(Schema):
    city: str | None
    country: str | None = Field(description="Two-letter country code (ISO 3166-1 alpha-2).")
    line1: str | None
    line2: str | None
    postal_code: str | None
    state: str | None


class Customer(Schema):
    id: str = Field(examples=["cus_12"])
    object: Literal["customer"]
    created: int | None = Field(description="Unix seconds.")
    address: Address
    delinquent: bool = Field(description="True while an invoice of the customer is overdue.")
    email: str | None
    name: str
    phone: str | None


class Recurring(Schema):
    interval: Literal["day", "week", "month", "year"]
    interval_count: int = Field(ge=1)
    usage_type: Literal["licensed"]


class Price(Schema):
    id: str
    object: Literal["price"]
    created: int | None
    active: bool
    currency: str = Field(pattern="^[a-z]{3}$")
    unit_amount_decimal: str = Field(examples=["35000"], description="Minor units per block.")
    recurring: Recurring


class SubscriptionItem(Schema):
    id: str
    object: Literal["subscription_item"]
    created: int | None
    quantity: int = Field(description="Number of leased blocks.")
    subscription: str
    price: Price


class SubscriptionItemList(Schema):
    object: Literal["list"]
    data: list[SubscriptionItem]


class Subscription(Schema):
    id: str = Field(examples=["sub_3"])
    object: Literal["subscription"]
    created: int | None
    currency: str = Field(pattern="^[a-z]{3}$")
    customer: str | Customer = Field(description="Expandable: `subscription.customer`.")
    status: Literal["active", "past_due", "canceled"]
    start_date: int | None
    current_period_start: int | None
    current_period_end: int | None
    cancel_at: int | None = Field(description="When the lease ends if nothing is paid.")
    ended_at: int | None
    days_until_due: int
    metadata: dict[str, str]
    items: SubscriptionItemList


class Invoice(Schema):
    """An invoice in Stripe's shape; `portal_status` is the portal's own status."""

    id: str = Field(examples=["in_42"])
    object: Literal["invoice"]
    number: str | None = Field(examples=["INV-2026-000123"])
    created: int
    account_name: str
    amount_due: int = Field(description="Minor units.", examples=[83300])
    amount_paid: int
    amount_remaining: int
    amount_refunded: int
    pre_payment_credit_notes_amount: int = Field(
        description="Credit notes that lowered the amount due before it was paid."
    )
    post_payment_credit_notes_amount: int = Field(
        description="Credit notes on money already paid (refunded or customer credit)."
    )
    starting_balance: int = Field(
        le=0, description="Customer credit applied at finalisation, negative (Stripe's sign)."
    )
    subtotal: int
    tax: int
    total: int
    currency: str = Field(pattern="^[a-z]{3}$", examples=["eur"])
    billing_reason: str | None
    customer: str | Customer = Field(description="Expandable: `customer`.")
    due_date: int | None
    invoice_pdf: str | None = Field(json_schema_extra={"format": "uri"})
    invoice_xml: str | None = Field(
        json_schema_extra={"format": "uri"},
        description="EN 16931 XML (XRechnung CII) when the invoice has one.",
    )
    paid: bool
    paid_out_of_band: bool
    period_start: int
    period_end: int = Field(description="Exclusive, like Stripe.")
    status: Literal[API_STATUSES]  # type: ignore[valid-type]
    portal_status: str
    subscription: str | Subscription | None = Field(description="Expandable: `subscription`.")
    payment_processing: bool = Field(
        description="A bank debit (SEPA, ACH) for it is processing: it is not charged, "
        "reminded or cancelled for until the bank answers (days). The status stays open."
    )


class InvoiceList(Schema):
    object: Literal["list"]
    url: str
    has_more: bool
    data: list[Invoice]


class InvoiceReport(Schema):
    id: str = Field(examples=["ir_7"])
    object: Literal["invoice_report"]
    invoice: str
    reason: str
    description: str
    expected_correction: str | None
    status: str
    staff_message: str | None
    created: int | None
    resolved: int | None


class ErrorBody(Schema):
    type: str = Field(examples=["invalid_request_error"])
    code: str | None = Field(examples=["parameter_invalid"])
    message: str
    param: str | None


class Error(Schema):
    error: ErrorBody


class InvoiceListQuery(Schema):
    """Cursor pagination newest first; a cursor is an invoice id from a previous page."""

    model_config = ConfigDict(populate_by_name=True)

    # The bounds are in the document (json_schema_extra) and checked by the validators
    # below, which word the errors the way the API always has.
    limit: int = Field(10, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})
    starting_after: str | None = Field(None, examples=["in_42"], json_schema_extra=CURSOR)
    ending_before: str | None = Field(None, examples=["in_42"], json_schema_extra=CURSOR)
    status: str | None = Field(None, json_schema_extra={"enum": list(API_STATUSES)})
    created_gte: int | None = Field(
        None, alias="created[gte]", description="Unix seconds.", json_schema_extra=UNIX_TIME
    )
    created_lte: int | None = Field(
        None, alias="created[lte]", description="Unix seconds.", json_schema_extra=UNIX_TIME
    )
    expand_list: list[str] = Field([], alias="expand[]", json_schema_extra=EXPAND_ITEMS)

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}.")
        return value

    @field_validator("starting_after", "ending_before")
    @classmethod
    def _cursor(cls, value: str | None, info) -> str | None:
        if value is not None and parse_invoice_api_id(value) is None:
            raise _invalid(f"{info.field_name} must be an invoice id such as in_123.")
        return value

    @field_validator("status")
    @classmethod
    def _status(cls, value: str | None) -> str | None:
        if value is not None and value not in API_STATUSES:
            raise _invalid(
                f"Unknown status {value!r}; use draft, open, paid, uncollectible or void."
            )
        return value

    @field_validator("created_gte", "created_lte")
    @classmethod
    def _unix(cls, value: int | None, info) -> int | None:
        if value is not None and not 0 <= value <= MAX_UNIX_TIME:
            name = cls.model_fields[info.field_name].alias
            raise _invalid(f"{name} is not a valid Unix time.")
        return value

    @field_validator("expand_list")
    @classmethod
    def _expand(cls, value: list[str]) -> list[str]:
        return check_expand(value)


class ExpandQuery(Schema):
    expand_list: list[str] = Field([], alias="expand[]", json_schema_extra=EXPAND_ITEMS)

    @field_validator("expand_list")
    @classmethod
    def _expand(cls, value: list[str]) -> list[str]:
        return check_expand(value)


class PayRequest(Schema):
    """shared/seeds/002: pay with a saved payment method of the invoice's customer."""

    model_config = ConfigDict(extra="forbid")

    payment_method: StrictStr = Field(
        description="Id of a payment method saved for the customer.",
        json_schema_extra={"minLength": 1, "maxLength": 255},
        examples=["pm_card_visa"],
    )
    off_session: StrictBool = False
    expand: list[StrictStr] = Field([], json_schema_extra=EXPAND_ITEMS)

    @field_validator("payment_method")
    @classmethod
    def _method(cls, value: str) -> str:
        if not value.strip() or len(value) > 255 or not value.isprintable():
            raise _invalid("payment_method must be a payment method id string.")
        return value

    @field_validator("expand")
    @classmethod
    def _expand(cls, value: list[str]) -> list[str]:
        return check_expand(value)


REPORT_TEXT_LIMITS = {"description": 4000, "expected_correction": 2000}


class ReportRequest(Schema):
    model_config = ConfigDict(extra="forbid")

    reason: StrictStr = Field(
        description="Why the invoice is wrong.",
        examples=["wrong_tax"],
        # The reasons are billing.collections' choices, read when the document is built.
        json_schema_extra=lambda schema: schema.update(enum=report_reasons()),
    )
    # Lengths are checked in _text, which words the error as the API always has.
    description: StrictStr = Field(
        json_schema_extra={"maxLength": REPORT_TEXT_LIMITS["description"]}
    )
    expected_correction: StrictStr = Field(
        "", json_schema_extra={"maxLength": REPORT_TEXT_LIMITS["expected_correction"]}
    )

    @field_validator("reason", mode="before")
    @classmethod
    def _reason(cls, value: object) -> object:
        reasons = report_reasons()
        if not isinstance(value, str) or value not in reasons:
            raise _invalid(f"reason must be one of: {', '.join(reasons)}.")
        return value

    @field_validator("description", "expected_correction")
    @classmethod
    def _text(cls, value: str, info) -> str:
        name = info.field_name
        if not _storable_text(value):
            raise _invalid(f"{name} must be a string of text.")
        if len(value) > REPORT_TEXT_LIMITS[name]:
            raise _invalid(f"{name} has at most {REPORT_TEXT_LIMITS[name]} characters.")
        value = value.strip()
        if name == "description" and not value:
            raise PydanticCustomError(
                "missing", "Missing required param: description (what is wrong with the invoice)."
            )
        return value


class BillingDetails(Schema):
    """What invoices are made out to: contracts.Customer's billing details."""

    id: str = Field(examples=["cus_12"])
    object: Literal["billing_details"]
    name: str
    email: str
    billing_cc_emails: list[str]
    address_line1: str
    address_line2: str
    postal_code: str
    city: str
    state: str
    country: str = Field(examples=["DE"])
    tax_id: str = Field(examples=["DE811907980"])
    purchase_order_reference: str
    buyer_reference: str = Field(description="E.g. a Leitweg-ID (EN 16931 BT-10).")
    document_language: str = Field(examples=["en"])


class BillingDetailsUpdate(Schema):
    """Any subset of the billing details; each is validated as on /account/billing/."""

    model_config = ConfigDict(extra="forbid")

    # Absent means unchanged; null is refused (a default of None is not validated).
    name: StrictStr = Field(None)
    email: StrictStr = Field(None)
    billing_cc_emails: list[StrictStr] = Field(None, json_schema_extra={"maxItems": 10})
    address_line1: StrictStr = Field(None)
    address_line2: StrictStr = Field(None)
    postal_code: StrictStr = Field(None)
    city: StrictStr = Field(None)
    state: StrictStr = Field(None)
    country: StrictStr = Field(None)
    tax_id: StrictStr = Field(None)
    purchase_order_reference: StrictStr = Field(None)
    buyer_reference: StrictStr = Field(None)
    document_language: StrictStr = Field(None, json_schema_extra={"enum": ["en", "de"]})

    @field_validator("*")
    @classmethod
    def _text(cls, value, info):
        name = info.field_name
        texts = value if isinstance(value, list) else [value]
        if any(isinstance(t, str) and not _storable_text(t) for t in texts):
            raise _invalid(f"{name} must be a string of text.")
        # The service validates meaning, the column its length: refuse here what
        # PostgreSQL would refuse with an error.
        limit = getattr(CustomerModel._meta.get_field(name), "max_length", None) or 254
        if any(isinstance(t, str) and len(t) > limit for t in texts):
            raise _invalid(f"{name} has at most {limit} characters.")
        return value


# --- Credit notes and statements ------------------------------------------------------

CREDIT_NOTE_CURSOR = {"pattern": "^cn_[0-9]{1,17}$"}
SUPPORTED = tuple(settings.SUPPORTED_CURRENCIES)


class TaxRateDetails(Schema):
    display_name: str
    percentage: str = Field(examples=["19.00"])


class CreditNoteTax(Schema):
    amount: int = Field(ge=0)
    taxable_amount: int = Field(ge=0)
    tax_behavior: Literal["exclusive"]
    taxability_reason: Literal["reverse_charge"] | None
    note: str | None
    tax_rate_details: TaxRateDetails


class CreditNoteRefund(Schema):
    amount_refunded: int = Field(ge=0)
    refund: str
    status: Literal["pending", "succeeded", "failed"]


class CreditNoteLine(Schema):
    id: str
    object: Literal["credit_note_line_item"]
    type: Literal["invoice_line_item", "custom_line_item"]
    invoice_line_item: str | None
    description: str
    amount: int = Field(ge=0, description="Net, minor units.")
    quantity: int
    unit_amount: int | None
    tax_rate_percentage: str


class CreditNoteLineList(Schema):
    object: Literal["list"]
    has_more: bool
    url: str
    data: list[CreditNoteLine]


class CreditNote(Schema):
    """Stripe's credit_note: a correction of one invoice, in its own numbered series."""

    id: str = Field(examples=["cn_7"])
    object: Literal["credit_note"]
    number: str = Field(examples=["CN-2026-000001"])
    created: int
    effective_at: int = Field(description="The issue date, Unix seconds.")
    currency: str = Field(pattern="^[a-z]{3}$")
    customer: str
    invoice: str = Field(examples=["in_42"])
    invoice_number: str
    amount: int = Field(ge=0)
    subtotal: int = Field(ge=0)
    subtotal_excluding_tax: int = Field(ge=0)
    total: int = Field(ge=0)
    total_excluding_tax: int = Field(ge=0)
    pre_payment_amount: int = Field(ge=0, description="Taken off the invoice's amount due.")
    post_payment_amount: int = Field(ge=0, description="Credited of money already paid.")
    out_of_band_amount: None
    credit_amount: int = Field(ge=0, description="Added to the customer's credit balance.")
    refund_amount: int = Field(ge=0, description="Refunded to the original payment method.")
    memo: str = Field(description="The reason, as printed on the credit note.")
    reason: None
    status: Literal["issued"]
    type: Literal["pre_payment", "post_payment", "mixed"]
    voided_at: None
    pdf: str = Field(json_schema_extra={"format": "uri"})
    credit_note_xml: str = Field(
        json_schema_extra={"format": "uri"},
        description="EN 16931 XML (XRechnung CII, type 381) naming the invoice it corrects.",
    )
    total_taxes: list[CreditNoteTax]
    refunds: list[CreditNoteRefund]
    lines: CreditNoteLineList


class CreditNoteList(Schema):
    object: Literal["list"]
    url: str
    has_more: bool
    data: list[CreditNote]


class CreditNoteListQuery(Schema):
    """Newest first; a cursor is a credit note id from a previous page."""

    limit: int = Field(10, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})
    starting_after: str | None = Field(
        None, examples=["cn_7"], json_schema_extra=CREDIT_NOTE_CURSOR
    )
    ending_before: str | None = Field(None, examples=["cn_7"], json_schema_extra=CREDIT_NOTE_CURSOR)
    invoice: str | None = Field(
        None, description="Only the credit notes of this invoice.", json_schema_extra=CURSOR
    )

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}.")
        return value

    @field_validator("starting_after", "ending_before")
    @classmethod
    def _cursor(cls, value: str | None, info) -> str | None:
        if value is not None and parse_credit_note_api_id(value) is None:
            raise _invalid(f"{info.field_name} must be a credit note id such as cn_123.")
        return value

    @field_validator("invoice")
    @classmethod
    def _invoice(cls, value: str | None) -> str | None:
        if value is not None and parse_invoice_api_id(value) is None:
            raise _invalid("invoice must be an invoice id such as in_123.")
        return value


class StatementLine(Schema):
    date: str = Field(json_schema_extra={"format": "date"})
    type: Literal["invoice", "credit_note", "payment", "refund", "adjustment"]
    reference: str
    description: str
    amount: int = Field(description="Minor units; positive raises what the customer owes.")
    balance: int = Field(description="Minor units; positive is owed by the customer.")


class StatementAging(Schema):
    as_of: str = Field(json_schema_extra={"format": "date"})
    current: int = Field(ge=0)
    days_1_30: int = Field(ge=0, alias="1_30")
    days_31_60: int = Field(ge=0, alias="31_60")
    days_61_90: int = Field(ge=0, alias="61_90")
    over_90: int = Field(ge=0)


class Statement(Schema):
    """Opening balance, every invoice, credit note, payment and refund of the period with
    the running balance, the closing balance, and the aging of what is open."""

    object: Literal["statement"]
    customer: str
    currency: str = Field(pattern="^[a-z]{3}$")
    period_start: str = Field(json_schema_extra={"format": "date"})
    period_end: str = Field(json_schema_extra={"format": "date"})
    opening_balance: int
    closing_balance: int
    credit_balance: int = Field(ge=0)
    lines: list[StatementLine]
    aging: StatementAging


class StatementQuery(Schema):
    currency: str = Field(
        description="One of the supported currencies, any case.",
        json_schema_extra={"enum": [*SUPPORTED, *(c.lower() for c in SUPPORTED)]},
    )
    start: str | None = Field(
        None,
        description="First day, YYYY-MM-DD (default: 1 January of end's year).",
        json_schema_extra={"format": "date"},
    )
    end: str | None = Field(
        None,
        description="Last day, YYYY-MM-DD, not before start (default: today).",
        json_schema_extra={"format": "date"},
    )


# --- Saved payment methods ------------------------------------------------------------

PAYMENT_METHOD_CURSOR = {"pattern": "^[A-Za-z0-9_]{1,100}$"}


class PaymentMethodCard(Schema):
    brand: str = Field(examples=["visa"])
    last4: str = Field(examples=["4242"])
    exp_month: int | None
    exp_year: int | None


class PaymentMethodMandate(Schema):
    id: str | None = Field(description="The provider's mandate id.")
    reference: str | None = Field(description="The mandate reference on bank statements.")
    accepted_at: int | None = Field(description="Unix seconds.")
    text: str | None = Field(description="The mandate wording the customer accepted.")


class PaymentMethodBank(Schema):
    bank_name: str | None = Field(examples=["Commerzbank"])
    last4: str = Field(examples=["3000"])
    mandate: PaymentMethodMandate


class PaymentMethodContract(Schema):
    id: str = Field(examples=["sub_12"])
    reference: str


class PaymentMethod(Schema):
    """A saved card or bank account; `id` is what `POST /api/invoices/{id}/pay` takes."""

    id: str = Field(examples=["pm_1Pgc75B7WZ01zgkWlHVgdEGJ"])
    object: Literal["payment_method"]
    type: Literal["card", "sepa_debit", "us_bank_account"]
    created: int
    card: PaymentMethodCard | None
    bank: PaymentMethodBank | None
    default: bool = Field(description="Automatic charges of contracts without their own use it.")
    contracts: list[PaymentMethodContract] = Field(
        description="Contracts (subscriptions) that name this method for their charges."
    )


class PaymentMethodList(Schema):
    object: Literal["list"]
    url: str
    has_more: bool
    data: list[PaymentMethod]


class PaymentMethodListQuery(Schema):
    """Default first, then newest; a cursor is a payment method id from a previous page."""

    limit: int = Field(10, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})
    starting_after: str | None = Field(None, json_schema_extra=PAYMENT_METHOD_CURSOR)
    ending_before: str | None = Field(None, json_schema_extra=PAYMENT_METHOD_CURSOR)
    type: str | None = Field(
        None, json_schema_extra={"enum": ["card", "sepa_debit", "us_bank_account"]}
    )

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}.")
        return value

    @field_validator("starting_after", "ending_before")
    @classmethod
    def _cursor(cls, value: str | None, info) -> str | None:
        if value is not None and not (
            0 < len(value) <= 100 and value.isascii() and value.replace("_", "").isalnum()
        ):
            raise _invalid(f"{info.field_name} must be a payment method id such as pm_123.")
        return value

    @field_validator("type")
    @classmethod
    def _type(cls, value: str | None) -> str | None:
        if value is not None and value not in ("card", "sepa_debit", "us_bank_account"):
            raise _invalid("type must be card, sepa_debit or us_bank_account.")
        return value


# --- Activity ---------------------------------------------------------------------------

ACTIVITY_CURSOR = {"pattern": "^act_[0-9]{1,17}$"}
DATE = {"format": "date"}


def parse_activity_api_id(value: str) -> int | None:
    digits = value.removeprefix("act_")
    return (
        int(digits) if value.startswith("act_") and digits.isdigit() and len(digits) < 18 else None
    )


class Activity(Schema):
    """One line of the account's activity, in the words /account/activity/ uses."""

    id: str = Field(examples=["act_981"])
    object: Literal["activity"]
    created: int = Field(description="Unix seconds.")
    kind: Literal[tuple(ACTIVITY_KINDS)]  # type: ignore[valid-type]
    kind_label: str
    text: str = Field(description="What happened, as a sentence (never staff's notes).")


class ActivityList(Schema):
    object: Literal["list"]
    url: str
    has_more: bool
    data: list[Activity]


class ActivityListQuery(Schema):
    """Newest first; a cursor is an activity id from a previous page."""

    limit: int = Field(10, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})
    starting_after: str | None = Field(
        None, examples=["act_981"], json_schema_extra=ACTIVITY_CURSOR
    )
    ending_before: str | None = Field(None, examples=["act_981"], json_schema_extra=ACTIVITY_CURSOR)
    kind: str | None = Field(
        None,
        description="One group of the activity page.",
        json_schema_extra={"enum": list(ACTIVITY_KINDS)},
    )
    date_from: str | None = Field(
        None, description="First day, YYYY-MM-DD.", json_schema_extra=DATE
    )
    date_to: str | None = Field(None, description="Last day, YYYY-MM-DD.", json_schema_extra=DATE)

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}.")
        return value

    @field_validator("starting_after", "ending_before")
    @classmethod
    def _cursor(cls, value: str | None, info) -> str | None:
        if value is not None and parse_activity_api_id(value) is None:
            raise _invalid(f"{info.field_name} must be an activity id such as act_123.")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        if value is not None and value not in ACTIVITY_KINDS:
            raise _invalid(f"Unknown kind {value!r}; use {', '.join(ACTIVITY_KINDS)}.")
        return value

    @field_validator("date_from", "date_to")
    @classmethod
    def _date(cls, value: str | None, info) -> str | None:
        if value is None:
            return value
        try:
            datetime.date.fromisoformat(value)
        except ValueError:
            raise _invalid(f"{info.field_name} must be a date such as 2026-01-31.") from None
        if len(value) != 10:
            raise _invalid(f"{info.field_name} must be a date such as 2026-01-31.")
        return value


# --- Webhook endpoints ---------------------------------------------------------------------

WEBHOOK_ENDPOINT_CURSOR = {"pattern": "^we_[0-9]{1,17}$"}


def parse_webhook_endpoint_api_id(value: str) -> int | None:
    digits = value.removeprefix("we_")
    return (
        int(digits) if value.startswith("we_") and digits.isdigit() and len(digits) < 18 else None
    )


class WebhookEndpoint(Schema):
    """Stripe's webhook_endpoint, without the secret (shown on /settings/webhooks/ only)."""

    id: str = Field(examples=["we_5"])
    object: Literal["webhook_endpoint"]
    url: str = Field(json_schema_extra={"format": "uri"})
    description: str | None
    enabled_events: list[str]
    status: Literal["enabled", "disabled"]
    disabled_reason: str | None
    created: int


class WebhookEndpointList(Schema):
    object: Literal["list"]
    url: str
    has_more: bool
    data: list[WebhookEndpoint]


class WebhookEndpointListQuery(Schema):
    """Newest first; a cursor is an endpoint id from a previous page."""

    limit: int = Field(10, json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})
    starting_after: str | None = Field(
        None, examples=["we_5"], json_schema_extra=WEBHOOK_ENDPOINT_CURSOR
    )
    ending_before: str | None = Field(
        None, examples=["we_5"], json_schema_extra=WEBHOOK_ENDPOINT_CURSOR
    )

    @field_validator("limit")
    @classmethod
    def _limit(cls, value: int) -> int:
        if not 1 <= value <= MAX_LIMIT:
            raise _invalid(f"limit must be between 1 and {MAX_LIMIT}.")
        return value

    @field_validator("starting_after", "ending_before")
    @classmethod
    def _cursor(cls, value: str | None, info) -> str | None:
        if value is not None and parse_webhook_endpoint_api_id(value) is None:
            raise _invalid(f"{info.field_name} must be a webhook endpoint id such as we_12.")
        return value
