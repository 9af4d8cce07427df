"""What the review services refuse, each with a message fit to show; pure Python."""

from __future__ import annotations


class ReviewError(Exception):
    """A review action that cannot be done; str(exc) says why."""

    @property
    def message(self) -> str:
        return str(self)


class NotAllowed(ReviewError):
    """The user lacks the permission, or the system is not assigned to them."""


class WrongState(ReviewError):
    """The item is not in a state that allows this action."""


class WrongUser(ReviewError):
    """Another reviewer holds the item."""


class FourEyesRequired(WrongUser):
    """An override must be approved by someone other than its author."""


class RationaleRequired(ReviewError):
    """A written rationale is required and was empty or too long."""


class InvalidOutput(ReviewError):
    """The override's new outcome is not a valid output."""


class ContestError(ReviewError):
    """A contest that cannot be recorded (empty, too long, already pending)."""


class SubjectErased(ReviewError):
    """The decision's personal data was erased: no text can be sealed for it any more."""
