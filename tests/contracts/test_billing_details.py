"""Billing details: tax ids validated with python-stdnum, the page for owners and billing
members (viewers read), reverse charge only after validation, issued invoices untouched,
every change on record with before and after (page and admin)."""

from decimal import Decimal

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import translation

from billing.collections.notifications import billing_contacts, notify_invoice_overdue
from billing.invoices.documents.pdf import invoice_pdf_document
from billing.invoices.models import InvoiceStatus, TaxRate
from billing.invoices.tax import OUTSIDE_EU_NOTE, REVERSE_CHARGE_NOTE, tax_for
from contracts import services
from contracts.models import Customer, Membership, Role
from contracts.selectors import billing_details_history
from contracts.taxids import tax_id_clean
from core.models import AuditEntry
from tests.billing.invoices.test_pdf import pdf_text
from tests.factories import (
    VALID_TAX_IDS,
    CustomerFactory,
    MembershipFactory,
    UserFactory,
    make_contract,
    make_invoice,
)

pytestmark = pytest.mark.django_db

URL = "/account/billing/"


# --- Tax ids ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "raw", "clean"),
    [
        ("DE", "DE 136 695 976", "DE136695976"),
        ("DE", "136695976", "DE136695976"),  # the prefix follows from the country
        ("AT", "atu13585627", "ATU13585627"),
        ("FR", "FR 40 303 265 045", "FR40303265045"),
        ("PL", "PL 856-734-62-15", "PL8567346215"),
        ("GR", "EL 094259216", "EL094259216"),
        ("GR", "094259216", "EL094259216"),
        ("NL", "NL004495445B01", "NL004495445B01"),
        ("IN", "27aapfu0939f1zv", "27AAPFU0939F1ZV"),
        ("GB", "GB 980 7806 84", "980780684"),
        ("CH", "CHE-107.787.577 IVA", "CHE107787577IVA"),
        ("US", "12-3456789", "12-3456789"),  # stdnum has no US VAT: kept as given
        ("DE", "", ""),
    ],
)
def test_valid_tax_ids_are_accepted_in_compact_form(country, raw, clean):
    assert tax_id_clean(country=country, tax_id=raw) == clean


@pytest.mark.parametrize(
    ("country", "raw", "message"),
    [
        ("DE", "DE136695978", "DE136695978 is not a valid Germany VAT number: its check digit"),
        ("DE", "DE13669597", "DE13669597 has the wrong number of characters for Germany VAT"),
        ("DE", "FR40303265045", "FR40303265045 is a VAT number from France, but the billing "
         "country is Germany"),
        ("AT", "DE136695976", "is a VAT number from Germany, but the billing country is Austria"),
        ("GR", "GR094259216", "Greek VAT numbers start with EL, not GR: write EL094259216."),
        ("DE", "N/A", "N/A is not a VAT number: VAT numbers from Germany start with DE"),
        ("PL", "PL7251234567", "PL7251234567 is not a valid Poland VAT number: its check digit"),
        ("IN", "99AAPFU0939F1ZV", "99 is not an Indian state code"),
        ("IN", "27AAPFU0939F1ZO", "27AAPFU0939F1ZO is not a valid GSTIN: its check digit"),
        ("IN", "27AAPFU0939F1Z", "27AAPFU0939F1Z has the wrong number of characters for GSTIN"),
        ("IN", "369296450896540", "369296450896540 is not in the format of GSTIN"),
        ("GB", "GB980780685", "980780685 is not a valid United Kingdom tax id"),
        ("CH", "CHE-123.456.789", "Switzerland tax id"),
    ],
)  # fmt: skip
def test_invalid_tax_ids_are_refused_naming_what_is_wrong(country, raw, message):
    with pytest.raises(ValidationError) as caught:
        tax_id_clean(country=country, tax_id=raw)
    assert message in caught.value.messages[0]


@pytest.mark.parametrize(
    ("country", "raw", "message"),
    [
        ("DE", "DE136695978", "DE136695978 ist keine gültige USt-IdNr. aus Deutschland: Die "
         "Prüfziffer stimmt nicht"),
        ("DE", "FR40303265045", "FR40303265045 ist eine USt-IdNr. aus Frankreich, das Land der "
         "Rechnungsadresse ist aber Deutschland"),
        ("IN", "27AAPFU0939F1Z", "27AAPFU0939F1Z hat die falsche Anzahl Zeichen für eine GSTIN"),
    ],
)  # fmt: skip
def test_a_german_page_names_the_problem_in_german(country, raw, message):
    with translation.override("de"), pytest.raises(ValidationError) as caught:
        tax_id_clean(country=country, tax_id=raw)
    assert message in caught.value.messages[0]


# --- Reverse charge only after validation -------------------------------------------


@pytest.mark.parametrize(
    ("country", "tax_id", "is_business", "rate", "note"),
    [
        ("AT", VALID_TAX_IDS["AT"], True, "0", REVERSE_CHARGE_NOTE),
        ("GR", VALID_TAX_IDS["GR"], True, "0", REVERSE_CHARGE_NOTE),
        ("AT", "ATU12345678", True, "20.00", ""),  # fails its checksum: taxed like a consumer
        ("AT", "N/A", True, "20.00", ""),
        ("AT", VALID_TAX_IDS["DE"], True, "20.00", ""),  # another country's id
        ("GR", "GR094259216", True, "24.00", ""),  # Greece's id without EL
        ("AT", VALID_TAX_IDS["AT"], False, "20.00", ""),  # not a business
        ("DE", VALID_TAX_IDS["DE"], True, "19.00", ""),  # domestic
        ("US", "", True, "0", OUTSIDE_EU_NOTE),
    ],
)
def test_reverse_charge_needs_a_validated_vat_id_of_an_eu_business(
    country, tax_id, is_business, rate, note
):
    decision = tax_for(country=country, tax_id=tax_id, on=_day(), is_business=is_business)
    assert (decision.rate, decision.note) == (Decimal(rate), note)


def test_with_vies_on_reverse_charge_also_needs_vies_valid(settings):
    settings.VIES_ENABLED = True
    args = {"country": "AT", "tax_id": VALID_TAX_IDS["AT"], "on": _day()}
    assert tax_for(**args).rate == Decimal("20.00")
    assert tax_for(**args, vies_confirmed=True).note == REVERSE_CHARGE_NOTE


def test_legacy_unvalidated_id_on_a_customer_no_longer_gets_reverse_charge():
    # Stored before validation existed (free text): the invoice charges the VAT.
    legacy = CustomerFactory(country="PL", city="Łódź", tax_id="PL7251234567")
    invoice = make_invoice(customer=legacy, price="100")
    assert (invoice.tax, invoice.tax_note) == (Decimal("23.00"), "")


def _day():
    import datetime

    return datetime.date(2026, 6, 1)


# --- The page -----------------------------------------------------------------------


def _form(customer: Customer, **changes) -> dict:
    data = {
        "name": customer.name,
        "address_line1": customer.address_line1,
        "address_line2": customer.address_line2,
        "postal_code": customer.postal_code,
        "city": customer.city,
        "state": customer.state,
        "country": customer.country,
        "email": customer.email,
        "billing_cc_emails": "\n".join(customer.billing_cc_emails),
        "purchase_order_reference": customer.purchase_order_reference,
        "buyer_reference": customer.buyer_reference,
        "tax_id": customer.tax_id,
        "document_language": customer.document_language,
    }
    data.update(changes)
    return data


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


def test_owner_sees_the_form_and_the_note_about_issued_invoices(owner_client, customer):
    page = owner_client.get(URL)
    body = page.content.decode()
    assert page.status_code == 200
    assert 'name="tax_id"' in body and 'name="billing_cc_emails"' in body
    assert "Invoices already issued keep" in body
    assert 'href="/account/billing/" aria-current="page"' in body


@pytest.mark.parametrize("role", [Role.OWNER, Role.BILLING])
def test_owner_and_billing_members_save_and_the_change_is_on_record(client, customer, role):
    member = MembershipFactory(customer=customer, role=role).user
    client.force_login(member)
    old_name = customer.name
    response = client.post(
        URL,
        _form(
            customer,
            name="Renamed Networks GmbH",
            billing_cc_emails="ap@example.com, cfo@example.com",
            tax_id="de 136695976",
            purchase_order_reference="PO-77",
            buyer_reference="04011000-1234512345-06",
            document_language="de",
        ),
    )
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.name == "Renamed Networks GmbH"
    assert customer.billing_cc_emails == ["ap@example.com", "cfo@example.com"]
    assert customer.tax_id == "DE136695976"
    assert (customer.purchase_order_reference, customer.buyer_reference) == (
        "PO-77",
        "04011000-1234512345-06",
    )
    assert customer.document_language == "de"

    entry = AuditEntry.objects.get(action="customer.details_changed")
    assert entry.actor == member and entry.customer == customer
    assert entry.before == {
        "name": old_name,
        "billing_cc_emails": [],
        "purchase_order_reference": "",
        "buyer_reference": "",
        "tax_id": "",
        "document_language": "en",
    }
    assert entry.after["name"] == "Renamed Networks GmbH"
    assert entry.after["tax_id"] == "DE136695976"

    page = client.get(URL)
    body = page.content.decode()
    assert "Billing details saved" in body
    assert "Invoices issued from now on use them" in body
    assert "History of changes" in body
    assert f'<span class="history__before">{old_name}</span>' in body
    assert '<span class="history__after">Renamed Networks GmbH</span>' in body
    assert '<span class="history__after">ap@example.com, cfo@example.com</span>' in body
    assert member.get_username() in body


def test_saving_the_same_values_again_records_nothing(owner_client, customer):
    owner_client.post(URL, _form(customer, city="Hamburg"))
    customer.refresh_from_db()
    owner_client.post(URL, _form(customer))
    assert AuditEntry.objects.filter(action="customer.details_changed").count() == 1


def test_viewer_reads_but_cannot_change(client, customer):
    viewer = MembershipFactory(customer=customer, role=Role.VIEWER).user
    client.force_login(viewer)
    page = client.get(URL)
    body = page.content.decode()
    assert page.status_code == 200
    assert customer.email in body and '<form method="post" novalidate' not in body
    assert "Only owners and billing members can change" in body

    response = client.post(URL, _form(customer, name="Hijacked"))
    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.name != "Hijacked"
    assert not AuditEntry.objects.filter(action="customer.details_changed").exists()


def _assert_refused(owner_client, customer, field: str, message: str, **changes):
    before = {f: getattr(customer, f) for f in services.CUSTOMER_FIELDS}
    response = owner_client.post(URL, _form(customer, name="Should Not Stick", **changes))
    assert response.status_code == 400
    body = response.content.decode()
    assert "Nothing was saved" in body
    assert message in body.replace("&#x27;", "'").replace("&quot;", '"'), body
    assert response.context["form"].errors[field]
    customer.refresh_from_db()
    assert {f: getattr(customer, f) for f in services.CUSTOMER_FIELDS} == before
    assert not AuditEntry.objects.filter(action="customer.details_changed").exists()


def test_invalid_vat_id_is_refused_and_nothing_saved(owner_client, customer):
    _assert_refused(
        owner_client, customer, "tax_id", "its check digit does not match", tax_id="DE136695978"
    )


def test_foreign_vat_id_is_refused(owner_client, customer):
    _assert_refused(
        owner_client,
        customer,
        "tax_id",
        "is a VAT number from France, but the billing country is Germany",
        tax_id=VALID_TAX_IDS["FR"],
    )


def test_gstin_with_a_wrong_state_code_or_checksum_is_refused(owner_client, customer):
    _assert_refused(
        owner_client, customer, "tax_id", "99 is not an Indian state code",
        country="IN", tax_id="99AAPFU0939F1ZV",
    )  # fmt: skip
    _assert_refused(
        owner_client, customer, "tax_id", "check digit does not match",
        country="IN", tax_id="27AAPFU0939F1ZO",
    )  # fmt: skip


def test_email_list_with_an_invalid_address_is_refused(owner_client, customer):
    _assert_refused(
        owner_client,
        customer,
        "billing_cc_emails",
        "“ap@example” is not a valid e-mail address.",
        billing_cc_emails="ok@example.com\nap@example",
    )


def test_country_without_a_tax_rate_is_refused(owner_client, customer):
    TaxRate.objects.filter(country="FR").delete()
    _assert_refused(
        owner_client,
        customer,
        "country",
        "We cannot invoice customers in France yet: no tax rate is set up for it.",
        country="FR",
        tax_id="",
    )


def test_country_without_a_tax_rate_is_refused_in_german_on_a_german_page(
    owner_client, customer, settings
):
    TaxRate.objects.filter(country="FR").delete()
    owner_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "de"
    response = owner_client.post(URL, _form(customer, country="FR", tax_id=""))
    assert response.status_code == 400
    body = response.content.decode().replace("&#x27;", "'")
    assert (
        # Country names take articles in German ("in den Vereinigten Staaten"): the name
        # stands in brackets, where no article is needed.
        "Kunden in diesem Land (Frankreich) können wir noch keine Rechnungen stellen: Dafür "
        "ist kein Steuersatz eingerichtet. Bitte wenden Sie sich an uns."
    ) in body
    assert "We cannot invoice" not in body


def test_unknown_country_is_refused(owner_client, customer):
    response = owner_client.post(URL, _form(customer, country="XX"))
    assert response.status_code == 400
    assert "country" in response.context["form"].errors


def test_a_country_outside_the_eu_without_a_rate_is_accepted(owner_client, customer):
    response = owner_client.post(URL, _form(customer, country="US", tax_id="", state="NY"))
    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.country == "US"


def test_history_page_query_count_does_not_grow_with_entries(
    owner_client, customer, django_assert_max_num_queries
):
    for city in ("Hamburg", "Köln", "München", "Bonn", "Jena", "Ulm"):
        services.customer_update(customer_id=customer.pk, changes={"city": city}, actor="t")
    with django_assert_max_num_queries(8):
        page = owner_client.get(URL)
    assert page.content.decode().count('class="history__when"') == 6


def test_another_customers_history_is_not_shown(owner_client, customer, other_customer):
    services.customer_update(
        customer_id=other_customer.pk, changes={"city": "Secret City"}, actor="t"
    )
    assert "Secret City" not in owner_client.get(URL).content.decode()


# --- Issued invoices keep what they were issued with ---------------------------------


def test_issued_invoices_keep_their_details_and_the_next_one_uses_the_new(owner_client, customer):
    contract = make_contract(customer)
    issued = make_invoice(contract)
    snapshot = (issued.bill_to_name, issued.bill_to_address, issued.bill_to_tax_id)
    old_pdf = pdf_text(invoice_pdf_document(issued).content)

    owner_client.post(
        URL,
        _form(
            customer,
            name="New Name AG",
            address_line1="Neue Straße 9",
            country="AT",
            tax_id=VALID_TAX_IDS["AT"],
            purchase_order_reference="PO-2026-9",
            buyer_reference="991-12345-67",
        ),
    )
    issued.refresh_from_db()
    assert (issued.bill_to_name, issued.bill_to_address, issued.bill_to_tax_id) == snapshot
    assert issued.purchase_order_reference == "" and issued.tax_note == ""
    assert pdf_text(invoice_pdf_document(issued).content) == old_pdf

    contract.refresh_from_db()
    later = make_invoice(contract)
    assert later.bill_to_name == "New Name AG" and "Neue Straße 9" in later.bill_to_address
    assert later.bill_to_country == "AT" and later.bill_to_tax_id == VALID_TAX_IDS["AT"]
    assert later.purchase_order_reference == "PO-2026-9"
    assert later.buyer_reference == "991-12345-67"
    assert later.tax_note == REVERSE_CHARGE_NOTE
    text = pdf_text(invoice_pdf_document(later).content)
    assert "New Name AG" in text and "PO-2026-9" in text and "991-12345-67" in text
    assert later.status == InvoiceStatus.OPEN


# --- Every billing e-mail gets the mail ------------------------------------------------


def test_reminders_go_to_every_billing_email(customer):
    MembershipFactory(customer=customer, user__email="owner@example.com")
    services.customer_update(
        customer_id=customer.pk,
        changes={"billing_cc_emails": ["ap@example.com", "cfo@example.com"]},
        actor="t",
    )
    customer.refresh_from_db()
    assert set(billing_contacts(customer)) == {
        customer.email,
        "ap@example.com",
        "cfo@example.com",
        "owner@example.com",
    }
    invoice = make_invoice(customer=customer)
    mail.outbox.clear()
    assert notify_invoice_overdue(invoice_id=invoice.pk)
    (message,) = mail.outbox
    assert {"ap@example.com", "cfo@example.com", customer.email} <= set(message.to)


# --- Admin: staff edits go through the services and are on record ---------------------


@pytest.fixture
def staff_client(client, staff):
    client.force_login(staff)
    return client


def _admin_form(customer: Customer, memberships=(), **changes) -> dict:
    data = _form(customer)
    data.update(
        phone=customer.phone,
        is_business="on" if customer.is_business else "",
        default_currency=customer.default_currency,
        **{
            "memberships-TOTAL_FORMS": str(len(memberships)),
            "memberships-INITIAL_FORMS": str(sum(1 for m in memberships if m.get("id"))),
            "memberships-MIN_NUM_FORMS": "0",
            "memberships-MAX_NUM_FORMS": "1000",
        },
    )
    for i, m in enumerate(memberships):
        for key, value in m.items():
            data[f"memberships-{i}-{key}"] = value
        data[f"memberships-{i}-customer"] = str(customer.pk)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_staff_edit_in_admin_is_recorded_and_the_customer_sees_it(
    staff_client, staff, customer, owner, client
):
    url = reverse("admin:contracts_customer_change", args=[customer.pk])
    assert staff_client.get(url).status_code == 200
    membership = Membership.objects.get(customer=customer, user=owner)
    m = [{"id": str(membership.pk), "user": str(owner.pk), "role": "owner"}]
    response = staff_client.post(url, _admin_form(customer, m, city="Potsdam", is_business=""))
    assert response.status_code == 302, response.content.decode()[:2000]
    customer.refresh_from_db()
    assert customer.city == "Potsdam" and customer.is_business is False
    entry = AuditEntry.objects.get(action="customer.details_changed")
    assert entry.actor == staff
    assert entry.before == {"city": "Berlin", "is_business": True}
    assert entry.after == {"city": "Potsdam", "is_business": False}

    (change,) = billing_details_history(customer)
    assert change.by == "Staff"
    assert [(c.label, c.before, c.after) for c in change.changes] == [
        ("City", "Berlin", "Potsdam"),
        ("Business customer", "yes", "no"),
    ]
    page = staff_client.get(url).content.decode()
    assert "customer.details_changed" in page and "Potsdam" in page


def test_admin_refuses_an_invalid_vat_id_and_saves_nothing(staff_client, customer, owner):
    url = reverse("admin:contracts_customer_change", args=[customer.pk])
    membership = Membership.objects.get(customer=customer, user=owner)
    m = [{"id": str(membership.pk), "user": str(owner.pk), "role": "owner"}]
    response = staff_client.post(url, _admin_form(customer, m, tax_id="DE123456789", city="X"))
    assert response.status_code == 200
    assert "check digit does not match" in response.content.decode()
    customer.refresh_from_db()
    assert customer.city == "Berlin" and customer.tax_id == ""
    assert not AuditEntry.objects.filter(action="customer.details_changed").exists()


def test_admin_membership_changes_are_recorded_with_roles(staff_client, staff, customer, owner):
    url = reverse("admin:contracts_customer_change", args=[customer.pk])
    membership = Membership.objects.get(customer=customer, user=owner)
    newcomer = UserFactory(username="newcomer@example.com")
    leaving = MembershipFactory(customer=customer, role=Role.BILLING)
    forms = [
        {"id": str(membership.pk), "user": str(owner.pk), "role": "billing"},
        {"id": str(leaving.pk), "user": str(leaving.user.pk), "role": "billing", "DELETE": "on"},
        {"id": "", "user": str(newcomer.pk), "role": "viewer"},
    ]
    response = staff_client.post(url, _admin_form(customer, forms))
    assert response.status_code == 302, response.content.decode()[:3000]

    changed = AuditEntry.objects.get(action="membership.changed")
    assert changed.actor == staff and changed.customer == customer
    assert changed.before == {"user": owner.username, "role": "owner"}
    assert changed.after == {"user": owner.username, "role": "billing"}
    removed = AuditEntry.objects.get(action="membership.removed")
    assert removed.before == {"user": leaving.user.username, "role": "billing"}
    added = AuditEntry.objects.get(action="membership.created")
    assert added.after == {"user": "newcomer@example.com", "role": "viewer"}
    assert not Membership.objects.filter(pk=leaving.pk).exists()
    assert Membership.objects.get(customer=customer, user=newcomer).role == Role.VIEWER
    page = staff_client.get(url).content.decode()
    assert "membership.changed" in page and "membership.removed" in page


def test_admin_adds_a_customer_through_the_service(staff_client, staff):
    data = _admin_form(
        Customer(country="FR", document_language="en", default_currency="EUR"),
        name="Paris Hosting SAS",
        email="factures@paris.example",
        city="Paris",
        tax_id="FR 40 303 265 045",
    )
    data.pop("memberships-0-customer", None)
    response = staff_client.post(reverse("admin:contracts_customer_add"), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    created = Customer.objects.get(name="Paris Hosting SAS")
    assert created.tax_id == "FR40303265045"
    entry = AuditEntry.objects.get(action="customer.created")
    assert entry.actor == staff and entry.after["tax_id"] == "FR40303265045"


def test_admin_vies_action_needs_the_change_permission(client, customer):
    clerk = UserFactory(username="clerk", is_staff=True)
    from django.contrib.auth.models import Permission

    clerk.user_permissions.add(Permission.objects.get(codename="view_customer"))
    client.force_login(clerk)
    url = reverse("admin:contracts_customer_changelist")
    page = client.get(url).content.decode()
    assert "check_vies" not in page
