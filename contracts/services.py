"""Writes for customers' resources: blocks, contracts, assignments and rDNS.

Each service owns its transaction, locks what it changes, re-checks state under
the lock and leaves an audit entry.
"""

import datetime
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from core.audit import Actor, audit_record
from core.errors import DomainError, check_transition
from core.money import normalize_currency, quantize

from .models import (
    BLOCK_TRANSITIONS,
    CONTRACT_TRANSITIONS,
    AssignmentRequest,
    BlockStatus,
    CancellationReason,
    ContractStatus,
    Customer,
    IPBlock,
    LeaseContract,
    RdnsDelegation,
    ResourceStatus,
    parse_ipv4_prefix,
)


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
