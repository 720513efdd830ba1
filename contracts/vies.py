"""The EU's VIES service, asked through python-stdnum (SOAP over zeep and requests).

Only this module talks to VIES. It answers with a VIESAnswer or raises VIESUnavailable;
callers never see zeep or requests errors.
"""

from dataclasses import dataclass

import requests
import zeep.exceptions
from django.conf import settings
from stdnum.eu import vat as eu_vat

# What an outage looks like from here: a SOAP fault (MS_UNAVAILABLE, TIMEOUT,
# GLOBAL_MAX_CONCURRENT_REQ, ...), an HTTP or transport error, a broken answer.
_OUTAGES = (zeep.exceptions.Error, requests.RequestException, OSError, ValueError)


class VIESUnavailable(Exception):
    """VIES could not answer; the message says why (safe to show staff)."""


@dataclass(frozen=True)
class VIESAnswer:
    valid: bool
    request_identifier: str
    trader: str


def _field(result, name: str) -> str:
    try:
        value = result[name]
    except (KeyError, AttributeError, TypeError):
        value = None
    return "" if value in (None, "---") else str(value).strip()


def vies_lookup(number: str) -> VIESAnswer:
    """Ask VIES whether `number` (an EU VAT number with its prefix) is valid.

    With the seller's own valid VAT id, checkVatApprox is used so VIES hands out a
    consultation number (requestIdentifier), the proof of the check.
    """
    requester = settings.SELLER.get("vat_id", "")
    timeout = settings.VIES_TIMEOUT_SECONDS
    try:
        if requester and eu_vat.is_valid(requester):
            result = eu_vat.check_vies_approx(number, requester, timeout=timeout)
        else:
            result = eu_vat.check_vies(number, timeout=timeout)
    except _OUTAGES as exc:
        raise VIESUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from exc
    trader = "\n".join(
        part
        for part in (
            _field(result, "traderName") or _field(result, "name"),
            _field(result, "traderAddress") or _field(result, "address"),
        )
        if part
    )
    return VIESAnswer(
        valid=bool(result["valid"]),
        request_identifier=_field(result, "requestIdentifier"),
        trader=trader,
    )
