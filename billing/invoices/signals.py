"""Domain events, sent after the transaction that caused them has committed.

Receivers (PDF rendering, automatic charges, e-mails) hang off these, in the apps
that depend on invoices, so invoices never imports them.
"""

from django.dispatch import Signal

# kwargs: invoice_id
invoice_finalized = Signal()
# kwargs: invoice_id, old_status, new_status
invoice_status_changed = Signal()
# A chunk of the billing run issued these invoices (all Open, numbered). Sent in a worker by
# the task invoices.invoices_issued, which the chunk queues after its commit: one message per
# chunk instead of invoice_finalized + invoice_status_changed per invoice, whose receivers
# would queue two tasks per invoice. Receivers batch their own work. kwargs: invoice_ids
invoices_issued = Signal()
# kwargs: credit_note_id (billing.payments sends its refund_amount back, if any)
credit_note_issued = Signal()

# A request, not an event: sent by billing.api inside the request, before anything is
# committed, to open a report (dispute) on an invoice. billing.collections owns reports
# and is its one receiver; the API may not import it (the two apps are independent).
# Sent with send(), so the receiver's DomainError reaches the caller; the receiver returns
# the report. kwargs: invoice_id, reason, description, expected_correction, user
invoice_report_requested = Signal()
