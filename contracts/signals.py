"""Signals of the contracts app; billing apps listen, contracts never imports them."""

from django.dispatch import Signal

# Sent before billing details are saved, with country, tax_id and is_business. A
# receiver returns a message when the portal could not bill those details (e.g. no tax
# rate for the country), else None; any message stops the save.
billing_details_check = Signal()
