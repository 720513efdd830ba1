"""Domain events, sent after the transaction that caused them has committed.

Receivers (PDF rendering, automatic charges, e-mails) hang off these, in the apps
that depend on invoices, so invoices never imports them.
"""

from django.dispatch import Signal

# kwargs: invoice_id
invoice_finalized = Signal()
# kwargs: invoice_id, old_status, new_status
invoice_status_changed = Signal()
