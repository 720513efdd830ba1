"""Writes for customers' resources: blocks, contracts, assignments and rDNS.

Each service owns its transaction, locks what it changes, re-checks state under
the lock and leaves an audit entry.
"""

import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from core.audit import Actor, audit_record
from core.errors import DomainError, check_transition
from core.money import normalize_currency, quantize
from core.queue import enqueue_on_commit

from .models import (
    BLOCK_TRANSITIONS,
    CONTRACT_TRANSITIONS,
    EU_COUNTRIES,
    AssignmentRequest,
    BlockStatus,
    CancellationReason,
    ContractStatus,
    Customer,
    DocumentLanguage,
    IPBlock,
    LeaseContract,
    Membership,
    RdnsDelegation,
    ResourceStatus,
    Role,
    parse_ipv4_prefix,
)
from .signals import billing_details_check
from .taxids import country_name, is_valid_eu_vat, tax_id_clean
from .vies import VIESUnavailable, vies_lookup


def overlapping_live_blocks(first: int, last: int, *, exclude_pk: int | None = None):
    """Blocks that are not deactivated and share at least one address with [first, last]."""
    qs = IPBlock.objects.filter(first_address__lte=last, last_address__gte=first).exclude(
        status=BlockStatus.DEACTIVATED
    )
    return qs.exclude(pk=exclude_pk) if exclude_pk else qs


def ipblock_validate(*, prefix: str, exclude_pk: int | None = None) -> tuple[str, int, int]:
    """Canonical prefix and address range, or a ValidationError saying what is wrong."""
    network = parse_ipv4_prefix(prefix)
    first, last = int(network.network_address), int(network.broadcast_address)
    clash = overlapping_live_blocks(first, last, exclude_pk=exclude_pk).first()
    if clash:
        raise ValidationError(f"{network} overlaps {clash.prefix}, which is {clash.status}.")
    return str(network), first, last


def ipblock_create(*, prefix: str, registry: str, actor: Actor) -> IPBlock:
    with transaction.atomic():
        canonical, first, last = ipblock_validate(prefix=prefix)
        block = IPBlock.objects.create(
            prefix=canonical, first_address=first, last_address=last, registry=registry
        )
        audit_record(
            actor=actor, action="ipblock.created", target=block, after={"prefix": canonical}
        )
    return block


def _set_block_status(block: IPBlock, target: str, *, actor: Actor, customer=None) -> None:
    check_transition(BLOCK_TRANSITIONS, label=f"Block {block}", current=block.status, target=target)
    before = block.status
    block.status = target
    block.save(update_fields=["status"])
    audit_record(
        actor=actor,
        action=f"ipblock.{target}",
        target=block,
        customer=customer,
        before={"status": before},
        after={"status": target},
    )


def contract_create(
    *,
    customer: Customer,
    block_ids: list[int],
    price_per_block: Decimal | str,
    currency: str,
    started_on: datetime.date,
    billing_anchor_day: int | None = None,
    actor: Actor,
) -> LeaseContract:
    """Lease available blocks to a customer; the blocks become leased."""
    try:
        price = quantize(Decimal(str(price_per_block)))
    except (InvalidOperation, ValueError):
        raise DomainError("The price per block must be a number.", code="price") from None
    if price < 0:
        raise DomainError("The price per block cannot be negative.", code="price")
    currency = normalize_currency(currency)
    if not block_ids:
        raise DomainError("A contract needs at least one block.", code="blocks")
    anchor = billing_anchor_day or min(started_on.day, 28)
    if not 1 <= anchor <= 28:
        raise DomainError("The billing day must be between 1 and 28.", code="anchor")

    with transaction.atomic():
        blocks = list(IPBlock.objects.select_for_update().filter(pk__in=set(block_ids)))
        if len(blocks) != len(set(block_ids)):
            raise DomainError("One of the blocks does not exist.", code="blocks")
        taken = [b.prefix for b in blocks if b.status != BlockStatus.AVAILABLE]
        if taken:
            raise DomainError(
                f"Not available for lease: {', '.join(sorted(taken))}.", code="block_unavailable"
            )
        contract = LeaseContract.objects.create(
            customer=customer,
            price_per_block=price,
            currency=currency,
            billing_anchor_day=anchor,
            started_on=started_on,
            next_billing_date=started_on,
        )
        contract.blocks.set(blocks)
        for block in blocks:
            _set_block_status(block, BlockStatus.LEASED, actor=actor, customer=customer)
        audit_record(
            actor=actor,
            action="contract.created",
            target=contract,
            customer=customer,
            after={
                "blocks": [b.prefix for b in blocks],
                "price_per_block": price,
                "currency": currency,
                "started_on": started_on,
                "billing_anchor_day": anchor,
            },
        )
    return contract


def _set_contract_status(contract: LeaseContract, target: str, *, actor: Actor, note="") -> None:
    check_transition(
        CONTRACT_TRANSITIONS, label=contract.reference, current=contract.status, target=target
    )
    before = contract.status
    contract.status = target
    contract.save(update_fields=["status", "cancelled_at", "cancellation_reason", "updated_at"])
    audit_record(
        actor=actor,
        action=f"contract.{target}",
        target=contract,
        customer=contract.customer,
        before={"status": before},
        after={"status": target, "reason": contract.cancellation_reason},
        note=note,
    )


def contract_mark_past_due(*, contract_id: int, actor: Actor) -> LeaseContract:
    """Active -> past_due. Quietly does nothing when already past due or cancelled."""
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract_id)
        if contract.status == ContractStatus.ACTIVE:
            _set_contract_status(contract, ContractStatus.PAST_DUE, actor=actor)
    return contract


def contract_restore(*, contract_id: int, actor: Actor) -> LeaseContract:
    """Past_due -> active (payment arrived). Quietly does nothing in any other state."""
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract_id)
        if contract.status == ContractStatus.PAST_DUE:
            _set_contract_status(contract, ContractStatus.ACTIVE, actor=actor)
    return contract


def contract_cancel(
    *, contract_id: int, reason: str, actor: Actor, now: datetime.datetime | None = None
) -> LeaseContract:
    """Cancel a contract: blocks deactivated, assignments and rDNS removed (kept as history).

    Quietly returns the contract when it is already cancelled.
    """
    if reason not in CancellationReason.values:
        raise DomainError("Unknown cancellation reason.", code="reason")
    now = now or timezone.now()
    with transaction.atomic():
        contract = (
            LeaseContract.objects.select_for_update(of=("self",))
            .select_related("customer")
            .get(pk=contract_id)
        )
        if contract.status == ContractStatus.CANCELLED:
            return contract
        contract.cancelled_at = now
        contract.cancellation_reason = reason
        _set_contract_status(contract, ContractStatus.CANCELLED, actor=actor)
        for block in IPBlock.objects.select_for_update(of=("self",)).filter(contracts=contract):
            if block.status == BlockStatus.LEASED:
                _set_block_status(
                    block, BlockStatus.DEACTIVATED, actor=actor, customer=contract.customer
                )
        for model in (AssignmentRequest, RdnsDelegation):
            live = model.objects.select_for_update().filter(
                contract=contract, status=ResourceStatus.ACTIVE
            )
            for item in live:
                item.status = ResourceStatus.REMOVED
                item.removed_at = now
                item.save(update_fields=["status", "removed_at"])
                audit_record(
                    actor=actor,
                    action=f"{model._meta.model_name}.removed",
                    target=item,
                    customer=contract.customer,
                    before={"status": ResourceStatus.ACTIVE},
                    after={"status": ResourceStatus.REMOVED},
                )
    return contract


def contract_extend_grace(
    *, contract_id: int, until: datetime.date, actor: Actor, note: str = ""
) -> LeaseContract:
    """Staff move the cancellation deadline of a contract to `until`."""
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract_id)
        if contract.status == ContractStatus.CANCELLED:
            raise DomainError(f"{contract.reference} is already cancelled.", code="cancelled")
        if until < timezone.localdate():
            raise DomainError("The new deadline must not be in the past.", code="date")
        before = contract.grace_extended_until
        contract.grace_extended_until = until
        contract.save(update_fields=["grace_extended_until", "updated_at"])
        audit_record(
            actor=actor,
            action="contract.grace_extended",
            target=contract,
            customer=contract.customer,
            before={"grace_extended_until": before},
            after={"grace_extended_until": until},
            note=note,
        )
    return contract


def contract_set_references(
    *, contract_id: int, buyer_reference: str, purchase_order_reference: str, actor: Actor
) -> LeaseContract:
    """The buyer's reference and order number this contract's invoices carry (blank: the
    customer's). Issued invoices keep theirs. Idempotent: unchanged values write nothing."""
    after = {
        "buyer_reference": buyer_reference.strip(),
        "purchase_order_reference": purchase_order_reference.strip(),
    }
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract_id)
        before = {name: getattr(contract, name) for name in after}
        if before == after:
            return contract
        for name, value in after.items():
            setattr(contract, name, value)
        contract.save(update_fields=[*after, "updated_at"])
        audit_record(
            actor=actor,
            action="contract.references_changed",
            target=contract,
            customer=contract.customer,
            before=before,
            after=after,
        )
    return contract


def assignment_create(
    *, contract: LeaseContract, block: IPBlock, reference: str, netname: str, actor: Actor
):
    return _resource_create(
        AssignmentRequest, contract, block, actor, reference=reference, netname=netname
    )


def rdns_create(
    *, contract: LeaseContract, block: IPBlock, zone: str, nameservers: str, actor: Actor
):
    return _resource_create(
        RdnsDelegation, contract, block, actor, zone=zone, nameservers=nameservers
    )


def _resource_create(model, contract, block, actor, **fields):
    with transaction.atomic():
        contract = LeaseContract.objects.select_for_update().get(pk=contract.pk)
        if contract.status == ContractStatus.CANCELLED:
            raise DomainError(f"{contract.reference} is cancelled.", code="cancelled")
        if not contract.blocks.filter(pk=block.pk).exists():
            raise DomainError(f"{block} is not part of {contract.reference}.", code="block")
        item = model.objects.create(contract=contract, block=block, **fields)
        audit_record(
            actor=actor,
            action=f"{model._meta.model_name}.created",
            target=item,
            customer=contract.customer,
            after=fields,
        )
    return item


# --- Customers: billing details, members, VIES ---------------------------------------

# What owners and billing members edit on /account/billing/; staff edit these and
# STAFF_FIELDS in admin. Both go through customer_update.
BILLING_DETAIL_FIELDS = (
    "name",
    "address_line1",
    "address_line2",
    "postal_code",
    "city",
    "state",
    "country",
    "email",
    "billing_cc_emails",
    "purchase_order_reference",
    "buyer_reference",
    "tax_id",
    "document_language",
)
STAFF_FIELDS = ("phone", "is_business", "default_currency")
CUSTOMER_FIELDS = BILLING_DETAIL_FIELDS + STAFF_FIELDS

MAX_CC_EMAILS = 10


def _clean_emails(values) -> list[str]:
    emails: list[str] = []
    for value in values or []:
        email = str(value).strip()
        if not email:
            continue
        try:
            validate_email(email)
        except ValidationError:
            raise ValidationError(
                _("“%(email)s” is not a valid e-mail address.") % {"email": email}
            ) from None
        if email.lower() not in {e.lower() for e in emails}:
            emails.append(email)
    if len(emails) > MAX_CC_EMAILS:
        raise ValidationError(_("At most %(count)s further addresses.") % {"count": MAX_CC_EMAILS})
    return emails


def customer_details_clean(values: dict[str, Any]) -> dict[str, Any]:
    """Normalised billing details, or a ValidationError per field saying what is wrong.

    `values` holds every field of CUSTOMER_FIELDS (the customer's current ones merged
    with the proposed changes): a tax id is judged against the country it will have.
    """
    data = dict(values)
    errors: dict[str, str] = {}
    for key in CUSTOMER_FIELDS:
        if isinstance(data.get(key), str):
            data[key] = data[key].strip()
    if not data.get("name"):
        errors["name"] = _("Enter the legal name invoices are made out to.")
    try:
        validate_email(data.get("email") or "")
    except ValidationError:
        errors["email"] = _("Enter the e-mail address invoices go to.")
    try:
        data["billing_cc_emails"] = _clean_emails(data.get("billing_cc_emails"))
    except ValidationError as exc:
        errors["billing_cc_emails"] = exc.messages[0]
    country = (data.get("country") or "").upper()
    data["country"] = country
    if len(country) != 2 or not country.isalpha() or country_name(country) == country:
        errors["country"] = _("Choose the country of the billing address.")
    if data.get("document_language") not in DocumentLanguage.values:
        errors["document_language"] = _("Choose English or German.")
    if "country" not in errors:
        try:
            data["tax_id"] = tax_id_clean(country=country, tax_id=data.get("tax_id") or "")
        except ValidationError as exc:
            errors["tax_id"] = exc.messages[0]
    if "country" not in errors and "tax_id" not in errors:
        for _receiver, problem in billing_details_check.send(
            sender=Customer,
            country=country,
            tax_id=data["tax_id"],
            is_business=bool(data.get("is_business", True)),
        ):
            if problem:
                errors["country"] = problem
                break
    if errors:
        raise ValidationError(errors)
    return data


def _customer_values(customer: Customer) -> dict[str, Any]:
    return {f: getattr(customer, f) for f in CUSTOMER_FIELDS}


def _queue_vies_check(customer: Customer) -> None:
    if settings.VIES_ENABLED and customer.country in EU_COUNTRIES and customer.tax_id:
        from . import tasks  # tasks import services

        enqueue_on_commit(tasks.vies_check, customer.pk)


def customer_create(*, values: dict[str, Any], actor: Actor) -> Customer:
    """A new customer with validated details (staff, in admin)."""
    blank = _customer_values(Customer())
    data = customer_details_clean({**blank, **values})
    with transaction.atomic():
        customer = Customer.objects.create(**{f: data[f] for f in CUSTOMER_FIELDS})
        audit_record(
            actor=actor,
            action="customer.created",
            target=customer,
            customer=customer,
            after={f: data[f] for f in CUSTOMER_FIELDS if data[f] not in ("", [], None)},
        )
        _queue_vies_check(customer)
    return customer


def customer_update(
    *, customer_id: int, changes: dict[str, Any], actor: Actor, note: str = ""
) -> Customer:
    """Change a customer's billing details; the audit entry holds before and after.

    Invoices already issued keep the details they were issued with (their bill_to_*
    snapshot); the next invoice finalised uses the new ones. Unknown fields are refused;
    a change to the values already held returns quietly without an entry.
    """
    unknown = set(changes) - set(CUSTOMER_FIELDS)
    if unknown:
        raise DomainError(f"Not a billing detail: {', '.join(sorted(unknown))}.", code="field")
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        current = _customer_values(customer)
        data = customer_details_clean({**current, **changes})
        changed = [f for f in CUSTOMER_FIELDS if data[f] != current[f]]
        if not changed:
            return customer
        for field_name in changed:
            setattr(customer, field_name, data[field_name])
        customer.save(update_fields=changed)
        audit_record(
            actor=actor,
            action="customer.details_changed",
            target=customer,
            customer=customer,
            before={f: current[f] for f in changed},
            after={f: data[f] for f in changed},
            note=note,
        )
        if {"tax_id", "country"} & set(changed):
            _queue_vies_check(customer)
    return customer


def _membership_state(membership: Membership) -> dict[str, Any]:
    return {"user": membership.user.get_username(), "role": membership.role}


def membership_create(*, customer: Customer, user, role: str, actor: Actor) -> Membership:
    """Give `user` a role at `customer`; an existing membership is returned as it is."""
    if role not in Role.values:
        raise DomainError("Unknown role.", code="role")
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            customer=customer, user=user, defaults={"role": role}
        )
        if created:
            audit_record(
                actor=actor,
                action="membership.created",
                target=membership,
                customer=customer,
                after=_membership_state(membership),
            )
    return membership


def membership_update(*, membership_id: int, user, role: str, actor: Actor) -> Membership:
    """Change the person or role of a membership; quietly nothing when both are as given."""
    if role not in Role.values:
        raise DomainError("Unknown role.", code="role")
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update(of=("self",))
            .select_related("user", "customer")
            .get(pk=membership_id)
        )
        before = _membership_state(membership)
        if membership.user_id == user.pk and membership.role == role:
            return membership
        membership.user, membership.role = user, role
        membership.save(update_fields=["user", "role"])
        audit_record(
            actor=actor,
            action="membership.changed",
            target=membership,
            customer=membership.customer,
            before=before,
            after=_membership_state(membership),
        )
    return membership


def membership_remove(*, membership_id: int, actor: Actor) -> None:
    """Take a person's access to a customer away; quietly nothing when already gone."""
    with transaction.atomic():
        membership = (
            Membership.objects.select_for_update(of=("self",))
            .select_related("user", "customer")
            .filter(pk=membership_id)
            .first()
        )
        if membership is None:
            return
        audit_record(
            actor=actor,
            action="membership.removed",
            target=membership,
            customer=membership.customer,
            before=_membership_state(membership),
        )
        membership.delete()


def customer_vies_check(*, customer_id: int, actor: Actor) -> Customer:
    """Ask VIES about the customer's VAT id and keep its answer and consultation number.

    The network call happens outside any transaction. An outage keeps the last answer
    and records the failure (billing goes on with what VIES said before); an answer for
    an id the customer has since changed is dropped. Nothing to do for a customer
    without a valid EU VAT id.
    """
    customer = Customer.objects.get(pk=customer_id)
    number = customer.tax_id
    if not is_valid_eu_vat(country=customer.country, tax_id=number):
        return customer
    try:
        answer = vies_lookup(number)
    except VIESUnavailable as exc:
        answer, failure = None, str(exc)
    now = timezone.now()
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer_id)
        if customer.tax_id != number:
            return customer
        fields = ["vies_valid", "vies_tax_id", "vies_checked_at", "vies_request_identifier"]
        fields += ["vies_trader", "vies_error", "vies_error_at"]
        before = {f: getattr(customer, f) for f in fields}
        if answer is None:
            customer.vies_error, customer.vies_error_at = failure, now
            action = "customer.vies_unavailable"
        else:
            customer.vies_valid = answer.valid
            customer.vies_tax_id = number
            customer.vies_checked_at = now
            customer.vies_request_identifier = answer.request_identifier
            customer.vies_trader = answer.trader
            customer.vies_error, customer.vies_error_at = "", None
            action = "customer.vies_checked"
        customer.save(update_fields=fields)
        after = {f: getattr(customer, f) for f in fields}
        audit_record(
            actor=actor,
            action=action,
            target=customer,
            customer=customer,
            before={f: v for f, v in before.items() if after[f] != v},
            after={f: v for f, v in after.items() if before[f] != v},
        )
    return customer
