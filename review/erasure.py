"""What a subject's erasure does to the review app: it closes the decisions' open review items
and strips the client decision id from their webhook bodies. Below review.services, which reads
personal data through audit.services.subjects, so that subject_erase can call it."""

from __future__ import annotations

from django.db.models import QuerySet
from django.utils import timezone

from audit.models import Decision, Erasure
from review.models import ReviewItem
from review.webhooks import webhook_bodies_redact


def review_erasure_apply(*, erasure: Erasure, decisions: QuerySet[Decision]) -> int:
    """In the erasure's transaction: closes every item of these decisions still in the queue,
    naming the erasure as the reason (nothing is left to review, and no review step can be
    added to an erased decision); returns how many. Not a ledger entry of its own: the
    erasure's entry commits to the decisions, and one entry per item, appended together,
    would tell the log's readers that those decisions were about one person."""
    closed = (
        ReviewItem.objects.filter(decision__in=decisions)
        .exclude(status=ReviewItem.Status.CLOSED)
        .update(
            status=ReviewItem.Status.CLOSED,
            closed_at=timezone.now(),
            closed_by=ReviewItem.ClosedBy.ERASURE,
            erasure=erasure,
            claimed_by=None,
            claimed_at=None,
            proposed_output=None,
            proposed_by=None,
        )
    )
    webhook_bodies_redact(decisions=decisions)
    return closed
