"""POST /api/invoices/<id>/report: scope, answers, bad input, idempotency."""

import json

import pytest
from jsonschema_rs import Draft202012Validator

from billing.api.models import ApiScope
from billing.api.views import openapi_document
from billing.collections.models import InvoiceReport, ReportStatus
from billing.invoices import services as invoice_services
from contracts.models import Role
from core.models import AuditEntry
from tests.factories import CustomerFactory, MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db

BODY = {"reason": "wrong_tax", "description": "Reverse charge missing.", "expected_correction": ""}


@pytest.fixture
def member(customer):
    return MembershipFactory(customer=customer, role=Role.BILLING)


@pytest.fixture
def disputer(member, make_token):
    return make_token(member, scopes=[ApiScope.READ_INVOICES, ApiScope.DISPUTE_INVOICES])[1]


@pytest.fixture
def report(api, disputer):
    def call(invoice_id, body=BODY, *, token=None, key=None, raw=None):
        headers = {"Idempotency-Key": key} if key else {}
        return api(
            "post",
            f"/api/invoices/{invoice_id}/report",
            token or disputer,
            data=raw if raw is not None else json.dumps(body),
            content_type="application/json",
            headers=headers,
        )

    return call


def _report_schema() -> Draft202012Validator:
    doc = openapi_document()
    schema = doc["components"]["schemas"]["InvoiceReport"]
    return Draft202012Validator({**schema, "components": doc["components"]})


def test_report_answers_the_report_and_puts_the_invoice_under_review(customer, member, report):
    invoice = make_invoice(customer=customer)
    response = report(f"in_{invoice.pk}")
    assert response.status_code == 200, response.content
    body = response.json()
    _report_schema().validate(body)
    saved = InvoiceReport.objects.get(invoice=invoice)
    assert body["id"] == f"ir_{saved.pk}" and body["invoice"] == f"in_{invoice.pk}"
    assert (body["status"], body["reason"], body["resolved"]) == ("open", "wrong_tax", None)
    assert saved.reported_by == member.user and saved.status == ReportStatus.OPEN
    entry = AuditEntry.objects.get(action="invoice_report.opened")
    assert entry.actor == member.user


def test_a_token_without_the_scope_is_refused(
    customer, member, make_token, report, assert_error_schema
):
    invoice = make_invoice(customer=customer)
    reader = make_token(member, scopes=[ApiScope.READ_INVOICES, ApiScope.PAY_INVOICES])[1]
    assert_error_schema(report(f"in_{invoice.pk}", token=reader), 403, "missing_scope")
    assert not InvoiceReport.objects.exists()


def test_another_customers_invoice_is_404(report, assert_error_schema, db):
    foreign = make_invoice(customer=CustomerFactory())
    assert_error_schema(report(f"in_{foreign.pk}"), 404, "resource_missing")
    assert not InvoiceReport.objects.exists()


def test_a_second_report_is_409(customer, report, assert_error_schema):
    invoice = make_invoice(customer=customer)
    report(f"in_{invoice.pk}")
    error = assert_error_schema(report(f"in_{invoice.pk}"), 409, "invoice_under_review")
    assert "already under review" in error["message"]
    assert InvoiceReport.objects.count() == 1


def test_a_void_invoice_is_409(customer, report, assert_error_schema):
    invoice = make_invoice(customer=customer)
    invoice_services.invoice_void(invoice_id=invoice.pk, actor="t")
    assert_error_schema(report(f"in_{invoice.pk}"), 409, "invoice_not_reportable")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"description": "x"}, "reason", "parameter_missing"),
        ({"reason": "rude", "description": "x"}, "reason", "parameter_invalid"),
        ({"reason": "other"}, "description", "parameter_missing"),
        ({"reason": "other", "description": "   "}, "description", "parameter_missing"),
        ({"reason": "other", "description": 5}, "description", "parameter_invalid"),
        ({"reason": "other", "description": "x" * 4001}, "description", "parameter_invalid"),
        ({"reason": "other", "description": "x", "amount": 1}, "amount", "parameter_unknown"),
    ],
)
def test_bad_input_is_400_and_changes_nothing(
    customer, report, assert_error_schema, body, param, code
):
    invoice = make_invoice(customer=customer)
    error = assert_error_schema(report(f"in_{invoice.pk}", body), 400, code)
    assert error["param"] == param
    assert not InvoiceReport.objects.exists()


def test_a_body_that_is_not_json_is_400(customer, report, assert_error_schema):
    invoice = make_invoice(customer=customer)
    assert_error_schema(report(f"in_{invoice.pk}", raw="reason=other"), 400, "body_invalid")


def test_the_same_idempotency_key_replays_the_first_answer(customer, report, assert_error_schema):
    invoice = make_invoice(customer=customer)
    first = report(f"in_{invoice.pk}", key="k-1")
    again = report(f"in_{invoice.pk}", key="k-1")
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert InvoiceReport.objects.count() == 1
    other_body = {**BODY, "reason": "other"}
    assert_error_schema(
        report(f"in_{invoice.pk}", other_body, key="k-1"), 400, "idempotency_key_in_use"
    )
