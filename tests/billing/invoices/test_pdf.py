import datetime
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core.files.storage import default_storage
from django.urls import reverse

from billing.invoices import services as invoice_services
from billing.invoices.documents import pdf as documents
from billing.invoices.documents.pdf import invoice_pdf_document, invoice_pdf_render, storage_name
from billing.invoices.links import invoice_for_pay_token, pay_url
from billing.invoices.models import InvoiceStatus
from billing.invoices.tax import REVERSE_CHARGE_NOTE
from billing.payments import services
from billing.payments.models import Payment, PaymentKind
from contracts.models import Role
from core import l10n
from tests.billing.invoices.pdf_helpers import (
    has_mark,
    invoice_with_lines,
    link_uris,
    pdf_text,
    png_of_first_page,
    reader,
    squash,
)
from tests.factories import CustomerFactory, MembershipFactory, make_invoice

pytestmark = pytest.mark.django_db
D = datetime.date
# Signed tokens carry a timestamp: freeze the clock so pay_url() is reproducible.
FROZEN = time_machine.travel(datetime.datetime(2026, 1, 2, 9, 0, tzinfo=datetime.UTC), tick=False)


def _url(invoice):
    return reverse("invoices:invoice-pdf", args=[invoice.ref])


@pytest.fixture
def client_of(client, owner):
    client.force_login(owner)
    return client


def _download(client, invoice, **headers):
    return client.get(_url(invoice), headers=headers)


def test_download_has_pdf_headers_and_complete_content(client_of, customer):
    customer.tax_id = "DE136695976"
    customer.save()
    invoice = make_invoice(customer=customer, blocks=2, price="123.45", started_on=D(2026, 3, 1))

    response = _download(client_of, invoice)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert response["Content-Disposition"] == f'attachment; filename="{invoice.number}.pdf"'
    assert int(response["Content-Length"]) == len(response.content)
    assert response["ETag"].startswith('"')
    text = pdf_text(response.content)
    assert invoice.number in text
    assert "Issue date 1 Mar 2026" in text
    assert "Due date 15 Mar 2026" in text
    assert "Service period 1 \u2013 31 Mar 2026" in text
    assert f"Contract {invoice.contract.reference}" in text
    for line in invoice.lines.select_related("block"):
        assert f"IPv4 lease {line.block.prefix} (256 addresses), 1 \u2013 31 Mar 2026" in text
    assert "Subtotal €246.90" in text
    assert "VAT 19% on €246.90 €46.91" in text
    assert "Total €293.81" in text
    assert "Germany VAT id: DE136695976" in text
    assert "IPv4 Lease Networks GmbH" in text and "VAT id: DE811111111" in text
    assert "Payment terms: 14 days net" in text
    assert "Page 1 of 1" in text
    assert not any(has_mark(text, m) for m in ("PAID", "VOID", "REFUNDED", "DRAFT"))
    pdf = reader(response.content)
    assert pdf.metadata.title == invoice.number
    assert pdf.metadata.author == "IPv4 Lease Networks GmbH"
    png = png_of_first_page(response.content, "invoice-open")
    assert png.stat().st_size > 1000


def test_fonts_are_embedded_dejavu(client_of, customer):
    content = _download(client_of, make_invoice(customer=customer)).content
    fonts = reader(content).pages[0]["/Resources"]["/Font"]
    assert fonts
    for ref in fonts.values():
        font = ref.get_object()
        descendant = (
            font["/DescendantFonts"][0].get_object() if "/DescendantFonts" in font else font
        )
        descriptor = descendant["/FontDescriptor"].get_object()
        assert "DejaVuSans" in str(font["/BaseFont"]).replace("-", "")
        assert any(k in descriptor for k in ("/FontFile", "/FontFile2", "/FontFile3"))


def test_names_with_diacritics_print_exactly_and_markup_prints_literally(client_of, customer):
    customer.name = "Müller GmbH <script>alert(1)</script>"
    customer.address_line1 = "Bahnhofstrasse 7"
    customer.postal_code, customer.city, customer.country = "8001", "Zürich", "CH"
    customer.save()
    invoice = make_invoice(customer=customer)
    customer.name, customer.city = "Łódź Networks", "Łódź"
    customer.save()  # the invoice keeps its snapshot

    text = pdf_text(_download(client_of, invoice).content)

    assert "Müller GmbH <script>alert(1)</script>" in text
    assert "8001 Zürich" in text
    assert "Łódź" not in text
    polish = CustomerFactory(
        name="Łódź Sp. z o.o.", city="Łódź", country="PL", tax_id="PL8567346215"
    )
    other = make_invoice(customer=polish)
    assert "Łódź Sp. z o.o." in pdf_text(invoice_pdf_document(other).content)


def test_reverse_charge_note_and_customer_vat_id(client_of, customer):
    customer.country, customer.tax_id = "AT", "ATU13585627"
    customer.save()
    invoice = make_invoice(customer=customer)
    text = pdf_text(_download(client_of, invoice).content)
    assert "VAT 0% on €100.00 €0.00" in text
    assert squash(REVERSE_CHARGE_NOTE) in text
    assert text.count("Reverse charge") == 1
    assert "Austria VAT id: ATU13585627" in text


@FROZEN
def test_pay_link_is_the_signed_link_of_exactly_this_invoice(client_of, customer):
    invoice = make_invoice(customer=customer)
    make_invoice(customer=customer)  # a neighbour the token must not open

    content = _download(client_of, invoice).content

    (uri,) = link_uris(content)
    assert uri == pay_url(invoice)
    parts = urlsplit(uri)
    assert f"{parts.scheme}://{parts.netloc}" == "http://testserver"
    assert parts.path == f"/invoices/{invoice.number}/pay/"
    (token,) = parse_qs(parts.query)["token"]
    assert invoice_for_pay_token(token, number=invoice.number) == invoice
    assert "Pay online" in pdf_text(content)


def test_paid_invoice_shows_paid_with_date_no_link_and_a_new_version(client_of, customer):
    invoice = make_invoice(customer=customer)
    first = _download(client_of, invoice)

    services.invoice_record_out_of_band_payment(invoice_id=invoice.pk, actor="staff")
    invoice.refresh_from_db()
    second = _download(client_of, invoice)

    assert second.status_code == 200
    assert second["ETag"] != first["ETag"]
    assert second.content != first.content
    text = pdf_text(second.content)
    assert has_mark(text, "PAID")
    assert f"Paid in full on {l10n.date(invoice.paid_at, 'en')}" in text
    assert link_uris(second.content) == []
    assert default_storage.exists(storage_name(invoice))


def test_void_invoice_is_marked_void_without_pay_link(client_of, customer):
    invoice = make_invoice(customer=customer)
    invoice_services.invoice_void(invoice_id=invoice.pk, actor="staff", reason="duplicate")
    content = _download(client_of, invoice).content
    text = pdf_text(content)
    assert has_mark(text, "VOID")
    assert "must not be paid" in text
    assert link_uris(content) == []


def test_refunded_invoice_is_marked_refunded(client_of, customer):
    invoice = make_invoice(customer=customer)
    payment = services.payment_create(
        invoice_id=invoice.pk, provider="sandbox", kind=PaymentKind.API, actor="t"
    )
    services.payment_record_success(payment_id=payment.pk, actor="t")
    services.payment_record_refund(
        payment_id=payment.pk, amount=invoice.total, provider_refund_id="re_1", actor="t"
    )
    invoice.refresh_from_db()
    assert invoice.status == InvoiceStatus.REFUND
    text = pdf_text(_download(client_of, invoice).content)
    assert has_mark(text, "REFUNDED")
    assert f"Refunded €{invoice.total}" in text


@FROZEN
def test_partly_paid_invoice_shows_what_is_still_due(client_of, customer):
    invoice = make_invoice(customer=customer, price="200.00")
    payment = services.payment_create(
        invoice_id=invoice.pk,
        provider="sandbox",
        kind=PaymentKind.API,
        actor="t",
    )
    # A partial payment (e.g. a short bank transfer) arrives for less than was asked.
    Payment.objects.filter(pk=payment.pk).update(amount=Decimal("50.00"))
    services.payment_record_success(payment_id=payment.pk, actor="t")
    invoice.refresh_from_db()
    content = _download(client_of, invoice).content
    text = pdf_text(content)
    assert "Paid €50.00" in text
    assert f"Amount due by 15 Jan 2026 €{invoice.amount_remaining}" in text
    assert link_uris(content) == [pay_url(invoice)]


def test_draft_is_clearly_not_final_and_never_cached(client_of, customer):
    draft = make_invoice(customer=customer, finalize=False)
    response = _download(client_of, draft)
    assert response.status_code == 200
    assert response["Content-Disposition"] == f'attachment; filename="draft-{draft.pk}.pdf"'
    text = pdf_text(response.content)
    assert has_mark(text, "DRAFT")
    assert "not a final invoice" in text
    assert customer.name in text
    assert link_uris(response.content) == []
    assert reader(response.content).metadata.title == f"DRAFT draft-{draft.pk}"
    assert invoice_pdf_render(invoice_id=draft.pk) == ""
    assert not default_storage.exists(f"invoices/pdf/{documents.TEMPLATE_REVISION}/{draft.pk}")
    png_of_first_page(response.content, "invoice-draft")


def test_zero_lines_renders(client_of, customer):
    draft = make_invoice(customer=customer, finalize=False)
    draft.lines.all().delete()
    response = _download(client_of, draft)
    assert response.status_code == 200
    assert "This invoice has no line items." in pdf_text(response.content)


def test_300_lines_run_over_pages_with_the_header_on_every_page(customer):
    invoice = invoice_with_lines(customer, 300)
    content = invoice_pdf_document(invoice).content
    pages = reader(content).pages
    assert len(pages) > 1
    texts = [squash(p.extract_text()) for p in pages]
    for n, text in enumerate(texts, start=1):
        assert f"Page {n} of {len(pages)}" in text
        if "Extra service item" in text:
            assert "Description Block Period Qty" in text, f"page {n} lacks the table header"
    everything = " ".join(texts)
    for i in range(1, 300):
        assert f"Extra service item {i:03d}" in everything
    assert f"€{invoice.total:,.2f}" in everything
    png_of_first_page(content, "invoice-300-lines")


def test_long_description_and_glyphs_missing_from_the_font_still_render(customer):
    long_text = ("Dedicated /24 lease with RPKI ROA and rDNS " * 12)[:480] + " 🚀 数据中心 ✓"
    assert len(long_text) <= 500
    invoice = invoice_with_lines(customer, 2, description=long_text)
    content = invoice_pdf_document(invoice).content
    text = pdf_text(content)
    assert "Dedicated /24 lease with RPKI ROA" in text
    assert invoice.number in text
    png_of_first_page(content, "invoice-long-description")


def test_render_is_cached_per_state_and_idempotent(customer, monkeypatch):
    invoice = make_invoice(customer=customer)
    name = invoice_pdf_render(invoice_id=invoice.pk)
    assert name == storage_name(invoice) and default_storage.exists(name)

    def boom(*a, **kw):
        raise AssertionError("rendered again")

    monkeypatch.setattr(documents, "render_invoice_pdf_bytes", boom)
    assert invoice_pdf_render(invoice_id=invoice.pk) == name
    with default_storage.open(name, "rb") as fh:
        assert invoice_pdf_document(invoice).content == fh.read()


def test_cache_hit_serves_identical_bytes_with_few_queries(
    client_of, customer, monkeypatch, django_assert_max_num_queries
):
    invoice = make_invoice(customer=customer, blocks=5)
    first = _download(client_of, invoice)
    monkeypatch.setattr(documents, "render_invoice_pdf_bytes", lambda *a: 1 / 0)
    with django_assert_max_num_queries(4):
        second = _download(client_of, invoice)
    assert second.status_code == 200
    assert second.content == first.content
    assert second["ETag"] == first["ETag"]


def test_if_none_match_answers_304_until_the_state_changes(client_of, customer):
    invoice = make_invoice(customer=customer)
    etag = _download(client_of, invoice)["ETag"]

    again = _download(client_of, invoice, if_none_match=etag)
    assert again.status_code == 304 and again["ETag"] == etag and again.content == b""

    invoice_services.invoice_void(invoice_id=invoice.pk, actor="staff")
    changed = _download(client_of, invoice, if_none_match=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert has_mark(pdf_text(changed.content), "VOID")


def test_storage_failure_still_serves_a_correct_pdf_and_caches_nothing(
    client_of, customer, monkeypatch
):
    invoice = make_invoice(customer=customer)
    name = storage_name(invoice)

    def half_written_then_fail(name, content, max_length=None):
        with open(default_storage.path(name), "wb") as fh:
            fh.write(content.read()[:100])
        raise OSError("No space left on device")

    import pathlib

    pathlib.Path(default_storage.path(name)).parent.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(default_storage, "save", half_written_then_fail)

    response = _download(client_of, invoice)

    assert response.status_code == 200
    assert invoice.number in pdf_text(response.content)
    assert not default_storage.exists(name)
    with pytest.raises(OSError, match="Could not store"):
        invoice_pdf_render(invoice_id=invoice.pk)
    assert not default_storage.exists(name)


def test_a_truncated_cached_file_is_never_served(client_of, customer):
    invoice = make_invoice(customer=customer)
    name = invoice_pdf_render(invoice_id=invoice.pk)
    with default_storage.open(name, "rb") as fh:
        good = fh.read()
    default_storage.delete(name)
    default_storage.save(name, __import__("io").BytesIO(good[: len(good) // 2]))

    response = _download(client_of, invoice)

    assert response.status_code == 200
    assert response.content.rstrip().endswith(b"%%EOF")
    assert invoice.number in pdf_text(response.content)
    with default_storage.open(name, "rb") as fh:
        assert fh.read() == response.content


def test_a_render_failure_is_a_clear_message_not_a_500(client_of, customer, monkeypatch):
    invoice = make_invoice(customer=customer)
    monkeypatch.setattr(documents, "render_invoice_pdf_bytes", lambda *a: 1 / 0)
    response = _download(client_of, invoice)
    assert response.status_code == 503
    assert "could not be produced" in response.content.decode()


def test_rendering_never_fetches_anything():
    for url in ("http://example.com/x.png", "https://evil.test/a.css", "file:///etc/passwd"):
        with pytest.raises(ValueError, match="do not fetch"):
            documents._no_network_fetcher(url)


def test_another_customers_invoice_is_404_and_login_is_required(client, owner, other_customer):
    foreign = make_invoice(customer=other_customer)
    assert client.get(_url(foreign)).status_code == 302
    client.force_login(owner)
    assert client.get(_url(foreign)).status_code == 404
    assert client.get("/invoices/INV-1999-000001/pdf/").status_code == 404
    assert client.get("/invoices/draft-abc/pdf/").status_code == 404


def test_a_viewer_may_download(client, customer):
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    response = client.get(_url(make_invoice(customer=customer)))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"


def test_the_download_lookup_is_one_statement_with_what_the_document_needs(
    customer, django_assert_num_queries
):
    from django.http import Http404

    from billing.invoices.selectors import invoice_for_pdf_or_404

    invoice = make_invoice(customer=customer)
    # This customer was loaded without its invoice version (the login's membership query
    # carries it): one statement reads it, one finds the invoice.
    with django_assert_num_queries(2):
        found = invoice_for_pdf_or_404(customer, invoice.number)
        # Everything storage name, ETag and filename use is loaded: no deferred-field query.
        assert (found.pk, found.number, found.customer_id) == (
            invoice.pk,
            invoice.number,
            customer.pk,
        )
        assert (found.status, found.state_version) == (invoice.status, invoice.state_version)
        assert storage_name(found) == storage_name(invoice)
        assert documents.document_filename(found) == f"{invoice.number}.pdf"
    # Again, unchanged: the invoice's facts come from the cache under the version.
    with django_assert_num_queries(1):
        again = invoice_for_pdf_or_404(customer, invoice.number)
    assert (again.pk, again.status, again.state_version) == (found.pk, "open", found.state_version)
    other = CustomerFactory()
    with pytest.raises(Http404):
        invoice_for_pdf_or_404(other, invoice.number)
    with pytest.raises(Http404):
        invoice_for_pdf_or_404(customer, "INV-0000-000000")


def test_a_repeated_download_reads_no_invoice_row_and_a_change_is_seen_at_once(client_of, customer):
    """The lookup's cache is keyed by the customer's invoice version, which database
    triggers change with every write: a voided invoice is served as voided right away."""
    import re

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def invoice_reads(seen) -> list[str]:
        return [
            q["sql"]
            for q in seen.captured_queries
            if re.search(r'FROM "?invoices_invoice"?\s', q["sql"])
        ]

    invoice = make_invoice(customer=customer)
    first = _download(client_of, invoice)
    with CaptureQueriesContext(connection) as seen:
        second = _download(client_of, invoice)
    assert second.status_code == 200 and second.content == first.content
    assert invoice_reads(seen) == []
    invoice_services.invoice_void(invoice_id=invoice.pk, actor="staff")
    with CaptureQueriesContext(connection) as seen:
        voided = _download(client_of, invoice)
    # Looked up again under the new version (then rendered: the voided document is new).
    assert invoice_reads(seen)[0].startswith("SELECT id, status, state_version FROM")
    assert voided["ETag"] != first["ETag"]
    invoice.refresh_from_db()
    assert voided["ETag"] == documents.cached_etag(invoice)
    assert "VOID" in pdf_text(voided.content)
    # The same number asked for by another customer's member is not found in the cache.
    outsider = MembershipFactory(customer=CustomerFactory()).user
    client_of.force_login(outsider)
    assert _download(client_of, invoice).status_code == 404
