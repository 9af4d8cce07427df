"""Writes of the review app: the workflow, policies, webhooks (see /tmp/review_interface.md)."""

from review.errors import (
    ContestError,
    FourEyesRequired,
    InvalidOutput,
    NotAllowed,
    RationaleRequired,
    ReviewError,
    SubjectErased,
    WrongState,
    WrongUser,
)
from review.policy import PolicyError
from review.services.flow import (
    contest_record,
    decision_attribute,
    review_approve,
    review_claim,
    review_confirm,
    review_escalate,
    review_item_open,
    review_override,
    review_reject_override,
    review_settings_get_or_create,
)
from review.services.policies import policy_set_publish
from review.webhooks import webhook_secret

__all__ = [
    "ContestError",
    "FourEyesRequired",
    "InvalidOutput",
    "NotAllowed",
    "PolicyError",
    "RationaleRequired",
    "ReviewError",
    "SubjectErased",
    "WrongState",
    "WrongUser",
    "contest_record",
    "decision_attribute",
    "policy_set_publish",
    "review_approve",
    "review_claim",
    "review_confirm",
    "review_escalate",
    "review_item_open",
    "review_override",
    "review_reject_override",
    "review_settings_get_or_create",
    "webhook_secret",
]
