"""Payment events, sent after the transaction that caused them has committed."""

from django.dispatch import Signal

# kwargs: payment_id, amount (Decimal to send back: duplicate or excess)
payment_needs_refund = Signal()
# kwargs: payment_id
payment_failed = Signal()
# kwargs: refund_id (the processor could not return the money; staff are told)
refund_failed = Signal()
