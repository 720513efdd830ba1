"""Domain errors shared by every service.

Messages are written for the person who caused them (a customer or a staff
member) and are safe to show as they are.
"""

from collections.abc import Mapping


class DomainError(Exception):
    """A request the domain refuses; nothing was changed."""

    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class InvalidTransition(DomainError):
    code = "invalid_transition"


def check_transition(
    table: Mapping[str, frozenset[str]], *, label: str, current: str, target: str
) -> None:
    """Raise InvalidTransition unless `table` allows current -> target."""
    if target not in table.get(current, frozenset()):
        raise InvalidTransition(
            f"{label} is {current.replace('_', ' ')} and cannot become {target.replace('_', ' ')}."
        )


class TransientError(Exception):
    """Something outside the portal (a provider, a mail server) cannot answer right now;
    the same work may succeed later. Celery tasks retry it (core.tasks.PortalTask)."""
