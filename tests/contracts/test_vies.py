"""VIES at its HTTP boundary: stdnum's check_vies/check_vies_approx go through zeep and
requests, so `responses` serves the recorded WSDL and SOAP answers; nothing leaves the
machine. An outage keeps the last answer and never blocks billing."""

import datetime
import pathlib
import re
from decimal import Decimal

import pytest
import requests
import responses
import stdnum.util
from django.contrib import admin

from billing.invoices.tax import REVERSE_CHARGE_NOTE
from contracts import services
from contracts.models import Customer
from contracts.selectors import customers_due_for_vies
from contracts.tasks import vies_recheck
from core.models import AuditEntry
from tests.factories import VALID_TAX_IDS, CustomerFactory, make_invoice

pytestmark = pytest.mark.django_db

FIXTURES = pathlib.Path(__file__).resolve().parents[1] / "fixtures" / "vies"
WSDL_URL = "https://ec.europa.eu/taxation_customs/vies/checkVatService.wsdl"
SERVICE = re.compile(r"https?://ec\.europa\.eu/taxation_customs/vies/services/checkVatService")
AT_ID = VALID_TAX_IDS["AT"]


def _soap(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.fixture
def vies(settings):
    """The VIES endpoint; stdnum's cached SOAP client is dropped so the WSDL is read here."""
    settings.SELLER = {**settings.SELLER, "vat_id": VALID_TAX_IDS["DE"]}
    stdnum.util._soap_clients.clear()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(WSDL_URL, body=_soap("checkVatService.wsdl"), content_type="text/xml")
        yield mock
    stdnum.util._soap_clients.clear()


def _answer(mock, name: str, status: int = 200) -> None:
    mock.post(SERVICE, body=_soap(name), status=status, content_type="text/xml")


def _soap_calls(mock) -> list[str]:
    return [c.request.body.decode() for c in mock.calls if c.request.method == "POST"]


@pytest.fixture
def austrian():
    return CustomerFactory(country="AT", city="Wien", postal_code="1010", tax_id=AT_ID)


def test_valid_answer_is_kept_with_its_consultation_number(vies, austrian):
    _answer(vies, "checkVatApprox-valid.xml")
    services.customer_vies_check(customer_id=austrian.pk, actor="test")

    (body,) = _soap_calls(vies)
    # checkVatApprox with the seller as requester: that is what yields the number.
    assert "checkVatApprox" in body and "<ns0:vatNumber>U13585627</ns0:vatNumber>" in body
    assert "<ns0:requesterVatNumber>136695976</ns0:requesterVatNumber>" in body
    austrian.refresh_from_db()
    assert austrian.vies_valid is True and austrian.vies_confirmed
    assert austrian.vies_tax_id == AT_ID
    assert austrian.vies_request_identifier == "WAPIAAAAW5vQXb1n"
    assert austrian.vies_trader == "ALPEN NETZ GMBH\nRINGSTRASSE 1\n1010 WIEN"
    assert austrian.vies_checked_at is not None and austrian.vies_error == ""
    entry = AuditEntry.objects.get(action="customer.vies_checked")
    assert entry.after["vies_request_identifier"] == "WAPIAAAAW5vQXb1n"


def test_without_a_valid_seller_id_plain_check_vat_is_used(vies, austrian, settings):
    settings.SELLER = {**settings.SELLER, "vat_id": "DE811111111"}  # fails its checksum
    _answer(vies, "checkVat-valid.xml")
    services.customer_vies_check(customer_id=austrian.pk, actor="test")
    (body,) = _soap_calls(vies)
    assert "checkVatApprox" not in body and "checkVat" in body
    austrian.refresh_from_db()
    assert austrian.vies_valid is True and austrian.vies_request_identifier == ""
    assert austrian.vies_trader.startswith("ALPEN NETZ GMBH")


def test_vies_not_valid_means_no_reverse_charge_while_vies_is_on(vies, austrian, settings):
    settings.VIES_ENABLED = True
    _answer(vies, "checkVatApprox-invalid.xml")
    services.customer_vies_check(customer_id=austrian.pk, actor="test")
    austrian.refresh_from_db()
    assert austrian.vies_valid is False and austrian.vies_trader == ""

    invoice = make_invoice(customer=austrian, price="100")
    assert invoice.tax == Decimal("20.00") and invoice.tax_note == ""


def test_outage_keeps_the_last_answer_and_billing_goes_on(vies, austrian, settings):
    settings.VIES_ENABLED = True
    _answer(vies, "checkVatApprox-valid.xml")
    services.customer_vies_check(customer_id=austrian.pk, actor="test")
    vies.replace(
        responses.POST, SERVICE, body=_soap("fault-ms-unavailable.xml"), status=500,
        content_type="text/xml",
    )  # fmt: skip

    services.customer_vies_check(customer_id=austrian.pk, actor="vies check")

    austrian.refresh_from_db()
    assert austrian.vies_valid is True and austrian.vies_confirmed, "the last answer stands"
    assert austrian.vies_request_identifier == "WAPIAAAAW5vQXb1n"
    assert "MS_UNAVAILABLE" in austrian.vies_error and austrian.vies_error_at is not None
    failure = AuditEntry.objects.get(action="customer.vies_unavailable")
    assert "MS_UNAVAILABLE" in failure.after["vies_error"]

    invoice = make_invoice(customer=austrian, price="100")
    assert invoice.tax == Decimal("0.00") and invoice.tax_note == REVERSE_CHARGE_NOTE

    # Staff see it in admin.
    shown = admin.site._registry[Customer].vies_state(austrian)
    assert shown.startswith("valid (") and "last check failed" in shown


def test_outage_before_any_answer_bills_with_vat_and_does_not_block(vies, austrian, settings):
    settings.VIES_ENABLED = True
    vies.post(SERVICE, body=requests.ConnectionError("VIES is down"))
    services.customer_vies_check(customer_id=austrian.pk, actor="vies check")
    austrian.refresh_from_db()
    assert austrian.vies_valid is None and "ConnectionError" in austrian.vies_error

    invoice = make_invoice(customer=austrian, price="100")
    assert invoice.status == "open" and invoice.tax == Decimal("20.00")
    # Once VIES answers, the next invoice gets reverse charge.
    vies.replace(
        responses.POST, SERVICE, body=_soap("checkVatApprox-valid.xml"), content_type="text/xml"
    )
    services.customer_vies_check(customer_id=austrian.pk, actor="vies check")
    austrian.refresh_from_db()
    assert austrian.vies_error == "" and austrian.vies_confirmed


def test_an_answer_for_an_id_changed_meanwhile_is_dropped(vies, austrian):
    def answer_after_the_customer_changed_the_id(request):
        Customer.objects.filter(pk=austrian.pk).update(tax_id="ATU12345675")
        return 200, {"Content-Type": "text/xml"}, _soap("checkVatApprox-valid.xml")

    vies.add_callback(responses.POST, SERVICE, callback=answer_after_the_customer_changed_the_id)
    services.customer_vies_check(customer_id=austrian.pk, actor="test")
    austrian.refresh_from_db()
    assert austrian.vies_valid is None and austrian.vies_tax_id == ""
    assert not AuditEntry.objects.filter(action__startswith="customer.vies").exists()


def test_a_changed_vat_id_is_checked_by_the_task_when_vies_is_on(
    vies, austrian, settings, django_capture_on_commit_callbacks
):
    settings.VIES_ENABLED = True
    _answer(vies, "checkVatApprox-valid.xml")
    austrian.tax_id = ""
    austrian.save()
    with django_capture_on_commit_callbacks(execute=True):
        services.customer_update(
            customer_id=austrian.pk, changes={"tax_id": "atu 1358 5627"}, actor="test"
        )
    austrian.refresh_from_db()
    assert austrian.tax_id == AT_ID and austrian.vies_confirmed
    assert len(_soap_calls(vies)) == 1


def test_no_vies_call_while_vies_is_off(vies, austrian, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        services.customer_update(customer_id=austrian.pk, changes={"tax_id": ""}, actor="t")
        services.customer_update(customer_id=austrian.pk, changes={"tax_id": AT_ID}, actor="t")
    assert _soap_calls(vies) == []
    assert list(customers_due_for_vies()) == []


def test_daily_recheck_finds_unanswered_failed_and_old_answers(vies, settings):
    settings.VIES_ENABLED = True
    now = datetime.datetime(2026, 6, 5, tzinfo=datetime.UTC)
    never = CustomerFactory(country="AT", tax_id=AT_ID)
    fresh = CustomerFactory(
        country="AT", tax_id=AT_ID, vies_valid=True, vies_tax_id=AT_ID,
        vies_checked_at=now - datetime.timedelta(days=3),
    )  # fmt: skip
    old = CustomerFactory(
        country="AT", tax_id=AT_ID, vies_valid=True, vies_tax_id=AT_ID,
        vies_checked_at=now - datetime.timedelta(days=31),
    )  # fmt: skip
    failed = CustomerFactory(
        country="AT", tax_id=AT_ID, vies_valid=True, vies_tax_id=AT_ID,
        vies_checked_at=now - datetime.timedelta(days=3), vies_error="TIMEOUT",
    )  # fmt: skip
    changed = CustomerFactory(
        country="AT", tax_id=AT_ID, vies_valid=True, vies_tax_id="ATU12345675",
        vies_checked_at=now,
    )  # fmt: skip
    CustomerFactory(country="US", tax_id="12-3456789")
    due = set(customers_due_for_vies(now=now))
    assert due == {never.pk, old.pk, failed.pk, changed.pk}
    assert fresh.pk not in due

    _answer(vies, "checkVatApprox-valid.xml")
    assert vies_recheck() >= 4
    failed.refresh_from_db()
    assert failed.vies_error == ""
