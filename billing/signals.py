"""Domain events, sent after the transaction that caused them has committed.

Receivers (PDF rendering, automatic charges, e-mails, contract standing) hang
off these so the services that move money stay small.
"""

from django.dispatch import Signal

# kwargs: invoice_id
invoice_finalized = Signal()
# kwargs: invoice_id, old_status, new_status
invoice_status_changed = Signal()
# kwargs: payment_id, amount (Decimal to send back: duplicate or excess)
payment_needs_refund = Signal()
# kwargs: payment_id
payment_failed = Signal()
# kwargs: refund_id (the processor could not return the money; staff are told)
refund_failed = Signal()
