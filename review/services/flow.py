"""The review workflow: attribution, claim, confirm, override (four-eyes), escalate, contest.

Each step is one durable transaction that locks the item's row, checks who may act and in
which state, appends the step as a ledger entry and moves the item on. A final review also
updates the bias counts and queues the system's webhook, after commit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.models import Decision, Subject
from audit.serializers import OutputSerializer
from audit.services.subjects import decision_client_id, decision_erased
from review.errors import (
    ContestError,
    FourEyesRequired,
    InvalidOutput,
    NotAllowed,
    SubjectErased,
    WrongState,
    WrongUser,
)
from review.models import DecisionOwner, ReviewAction, ReviewItem, ReviewSettings
from review.permissions import PERM_APPROVE, PERM_ASSIGN, PERM_REVIEW, user_may_review
from review.services.common import (
    DEFAULT_DEADLINE_HOURS,
    SUBJECT_PSEUDONYM,
    SealedText,
    action_append,
    actor_pseudonym,
    due_at,
    text_clean,
)
from review.webhooks import webhook_delivery_create

Status = ReviewItem.Status
Kind = ReviewAction.Kind


def _require(user: Any, permission: str, decision: Decision, doing: str) -> None:
    if not user_may_review(user=user, system=decision.system, permission=permission):
        raise NotAllowed(f"you may not {doing} decisions of {decision.system.name}")


def _locked(item: ReviewItem) -> ReviewItem:
    """The item's row, locked until the transaction ends: two reviewers acting at once take
    turns, and the second sees the state the first left."""
    return (
        ReviewItem.objects.select_for_update(of=("self",))
        .select_related("decision__system", "decision__entry", "decision__subject")
        .get(pk=item.pk)
    )


def _deadline_hours(decision: Decision) -> int:
    review_settings = ReviewSettings.objects.filter(system_id=decision.system_id).first()
    return review_settings.review_deadline_hours if review_settings else DEFAULT_DEADLINE_HOURS


def _time_spent(item: ReviewItem, started_at: datetime | None) -> int:
    start = started_at or item.claimed_at
    if start is None:
        return item.time_spent_seconds
    return item.time_spent_seconds + max(0, round((timezone.now() - start).total_seconds()))


def _holder(item: ReviewItem, reviewer: Any) -> None:
    if item.status != Status.CLAIMED:
        raise WrongState(f"the review is {item.get_status_display()}, not claimed")
    if item.claimed_by_id != reviewer.pk:
        raise WrongUser("another reviewer has claimed this review: claim it first")


def _output_valid(output: Any) -> dict[str, Any]:
    incoming = OutputSerializer(data=output)
    if not isinstance(output, dict) or not incoming.is_valid():
        errors = incoming.errors if isinstance(output, dict) else "must be an object"
        raise InvalidOutput(f"the new outcome is not valid: {errors}")
    return dict(output)


def _finalise(item: ReviewItem, action: ReviewAction, result: str, output: dict[str, Any]) -> None:
    """Closes the item with its final outcome; the counts and the webhook follow it."""
    # Imported here: bias.services reads decisions through audit.services, which imports the
    # review intake; a module-level import would close that circle at start-up.
    from bias.services import counts_final_set

    item.status = Status.CLOSED
    item.result = result
    item.final_output = output
    item.proposed_output = None
    item.closed_at = timezone.now()
    item.closed_by = ReviewItem.ClosedBy.REVIEW
    item.save()
    counts_final_set(decision=item.decision, final_output=output)
    webhook_delivery_create(
        item=item, action=action, client_decision_id=decision_client_id(item.decision)
    )


def review_settings_get_or_create(*, system: Any) -> ReviewSettings:
    review_settings, _ = ReviewSettings.objects.get_or_create(system=system)
    return review_settings


def decision_attribute(*, decision: Decision, owner: Any, by: Any) -> DecisionOwner:
    """Makes `owner` accountable for the decision, as an attribution entry."""
    _require(by, PERM_ASSIGN, decision, "attribute")
    if not getattr(owner, "is_active", False):
        raise NotAllowed("the owner must be an active user")
    with transaction.atomic(durable=True):
        action = action_append(
            decision=decision,
            kind=Kind.ATTRIBUTION,
            entry_kind="attribution",
            actor=by,
            pseudonym=actor_pseudonym(by),
            extra={"owner": actor_pseudonym(owner), "source": DecisionOwner.Source.REVIEWER},
        )
        return DecisionOwner.objects.create(
            decision=decision,
            user=owner,
            source=DecisionOwner.Source.REVIEWER,
            assigned_by=by,
            entry=action.entry,
            created_at=action.created_at,
        )


def review_item_open(
    *, decision: Decision, by: Any, reason: str = ReviewItem.Reason.MANUAL
) -> ReviewItem:
    """Puts a decision in the queue by hand (or reopens its closed item)."""
    if by is not None:
        _require(by, PERM_REVIEW, decision, "send to review")
    with transaction.atomic(durable=True):
        # The subject's row lock, which subject_erase holds while it closes the items: an
        # erasure either finished before this check or closes the item made here.
        decision.subject = Subject.objects.select_for_update(of=("self",)).get(
            pk=decision.subject_id
        )
        if decision_erased(decision):
            # Nothing left to judge, and no review step could be added: it would stay open.
            raise SubjectErased("the personal data of this decision was erased: nothing to review")
        item, created = _item_get_or_create(decision, reason, "")
        return item if created else _item_reopen(item, reason, "")


def _item_get_or_create(decision: Decision, reason: str, detail: str) -> tuple[ReviewItem, bool]:
    """The decision's item, locked, or a new open one; True when new."""
    item = ReviewItem.objects.select_for_update().filter(decision=decision).first()
    if item is not None:
        return item, False
    try:
        # A savepoint: on PostgreSQL a failed insert would otherwise spoil the transaction.
        with transaction.atomic():
            item = ReviewItem.objects.create(
                decision=decision,
                reason=reason,
                reason_detail=detail,
                due_at=due_at(hours=_deadline_hours(decision)),
            )
        return item, True
    except IntegrityError:
        # Another request (two first contests at once) queued it between our read and our
        # insert; the insert waited for that transaction, so its row is committed and ours.
        return ReviewItem.objects.select_for_update().get(decision=decision), False


def _item_reopen(item: ReviewItem, reason: str, detail: str) -> ReviewItem:
    """Puts an existing item back in the queue with this reason."""
    if item.status == Status.CLOSED:
        # A new review from scratch: nothing of the last one's work carries over but its
        # result and final_output, which hold until the next final review (the ledger keeps
        # every step). created_at restarts so that turnaround counts this review only.
        item.status = Status.OPEN
        item.claimed_by = None
        item.claimed_at = None
        item.escalated_by = None
        item.proposed_by = None
        item.proposed_output = None
        item.time_spent_seconds = 0
        item.created_at = timezone.now()
        item.closed_at = None
        item.closed_by = ""
        item.erasure = None
        item.due_at = due_at(hours=_deadline_hours(item.decision))
    elif item.reason == ReviewItem.Reason.CONTEST:
        # A pending contest stays one: the subject page says it awaits review, and the subject
        # may not contest again until it is reviewed.
        return item
    item.reason = reason
    item.reason_detail = detail
    item.save()
    return item


def review_claim(*, item: ReviewItem, reviewer: Any) -> ReviewItem:
    """Takes an open or escalated item; not an entry (the steps that decide are)."""
    with transaction.atomic(durable=True):
        item = _locked(item)
        _require(reviewer, PERM_REVIEW, item.decision, "review")
        if item.status not in (Status.OPEN, Status.ESCALATED):
            raise WrongState(f"the review is {item.get_status_display()}: it cannot be claimed")
        if item.status == Status.ESCALATED and item.escalated_by_id == reviewer.pk:
            raise WrongUser("you escalated this review: someone else must take it")
        item.status = Status.CLAIMED
        item.claimed_by = reviewer
        item.claimed_at = timezone.now()
        item.save()
        return item


def review_confirm(
    *, item: ReviewItem, reviewer: Any, rationale: str, started_at: datetime | None = None
) -> ReviewItem:
    """The reviewer upholds the AI's output: final."""
    rationale = text_clean(rationale)
    with transaction.atomic(durable=True):
        item = _locked(item)
        _require(reviewer, PERM_REVIEW, item.decision, "review")
        _holder(item, reviewer)
        item.time_spent_seconds = _time_spent(item, started_at)
        action = action_append(
            decision=item.decision,
            kind=Kind.CONFIRM,
            entry_kind="review",
            actor=reviewer,
            pseudonym=actor_pseudonym(reviewer),
            item=item,
            text=SealedText.for_decision(item.decision, rationale),
            extra={"reason": item.reason},
        )
        _finalise(item, action, ReviewItem.Result.CONFIRMED, item.decision.output)
        return item


def review_override(
    *,
    item: ReviewItem,
    reviewer: Any,
    rationale: str,
    output: dict[str, Any],
    started_at: datetime | None = None,
) -> ReviewItem:
    """The reviewer replaces the AI's output: final at once, or with four-eyes awaiting a
    second reviewer's approval."""
    rationale = text_clean(rationale)
    output = _output_valid(output)
    with transaction.atomic(durable=True):
        item = _locked(item)
        _require(reviewer, PERM_REVIEW, item.decision, "review")
        _holder(item, reviewer)
        item.time_spent_seconds = _time_spent(item, started_at)
        four_eyes = ReviewSettings.objects.filter(
            system_id=item.decision.system_id, four_eyes=True
        ).exists()
        action = action_append(
            decision=item.decision,
            kind=Kind.OVERRIDE,
            entry_kind="review",
            actor=reviewer,
            pseudonym=actor_pseudonym(reviewer),
            item=item,
            text=SealedText.for_decision(item.decision, rationale),
            output=output,
            extra={"reason": item.reason, "needs_approval": four_eyes},
        )
        if not four_eyes:
            _finalise(item, action, ReviewItem.Result.OVERRIDDEN, output)
            return item
        item.status = Status.AWAITING_APPROVAL
        item.proposed_output = output
        item.proposed_by = reviewer
        item.save()
        return item


def review_approve(
    *, item: ReviewItem, approver: Any, rationale: str, approve: bool = True
) -> ReviewItem:
    """Four-eyes: a second reviewer approves the pending override (final) or rejects it (the
    item goes back to the queue)."""
    rationale = text_clean(rationale)
    with transaction.atomic(durable=True):
        item = _locked(item)
        _require(approver, PERM_APPROVE, item.decision, "approve overrides of")
        if item.status != Status.AWAITING_APPROVAL:
            raise WrongState(f"the review is {item.get_status_display()}: no override to approve")
        if item.proposed_by_id == approver.pk:
            raise FourEyesRequired("four-eyes: someone other than its author must approve it")
        override = item.actions.filter(kind=Kind.OVERRIDE).select_related("entry").last()
        action = action_append(
            decision=item.decision,
            kind=Kind.APPROVE if approve else Kind.REJECT_OVERRIDE,
            entry_kind="review",
            actor=approver,
            pseudonym=actor_pseudonym(approver),
            item=item,
            text=SealedText.for_decision(item.decision, rationale),
            output=item.proposed_output if approve else None,
            extra={"override": str(override.entry.uuid) if override else None},
        )
        if approve:
            _finalise(item, action, ReviewItem.Result.OVERRIDDEN, item.proposed_output)
            return item
        item.status = Status.OPEN
        item.proposed_output = None
        item.proposed_by = None
        item.claimed_by = None
        item.claimed_at = None
        item.save()
        return item


def review_reject_override(*, item: ReviewItem, approver: Any, rationale: str) -> ReviewItem:
    return review_approve(item=item, approver=approver, rationale=rationale, approve=False)


def review_escalate(
    *, item: ReviewItem, reviewer: Any, rationale: str, started_at: datetime | None = None
) -> ReviewItem:
    """The reviewer hands the item on; someone else must claim it."""
    rationale = text_clean(rationale)
    with transaction.atomic(durable=True):
        item = _locked(item)
        _require(reviewer, PERM_REVIEW, item.decision, "review")
        _holder(item, reviewer)
        item.time_spent_seconds = _time_spent(item, started_at)
        action_append(
            decision=item.decision,
            kind=Kind.ESCALATE,
            entry_kind="review",
            actor=reviewer,
            pseudonym=actor_pseudonym(reviewer),
            item=item,
            text=SealedText.for_decision(item.decision, rationale),
            extra={"reason": item.reason},
        )
        item.status = Status.ESCALATED
        item.escalated_by = reviewer
        item.claimed_by = None
        item.claimed_at = None
        item.save()
        return item


def contest_record(*, decision: Decision, statement: str) -> ReviewAction:
    """The person decided about contests the decision (GDPR Art. 22(3)): a contest entry, and
    the decision goes to the queue. Refused while an earlier contest is still pending."""
    statement = text_clean(statement, what="statement")
    with transaction.atomic(durable=True):
        detail = "contested by the subject"
        item, created = _item_get_or_create(decision, ReviewItem.Reason.CONTEST, detail)
        if not created:
            if item.status != Status.CLOSED and item.reason == ReviewItem.Reason.CONTEST:
                raise ContestError("your contest of this decision is already awaiting review")
            _item_reopen(item, ReviewItem.Reason.CONTEST, detail)
        text = SealedText.for_decision(decision, statement)
        return action_append(
            decision=decision,
            kind=Kind.CONTEST,
            entry_kind="contest",
            actor=None,
            pseudonym=SUBJECT_PSEUDONYM,
            item=item,
            text=text,
        )
