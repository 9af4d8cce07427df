"""Celery tasks of the review app: thin wrappers around review/webhooks.py, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from review.webhooks import webhook_deliver, webhooks_due


@shared_task(name="review.webhook_deliver")
def webhook_deliver_task(delivery_id: int) -> str:
    return webhook_deliver(delivery_id=delivery_id)


@shared_task(name="review.webhooks_sweep")
def webhooks_sweep_task() -> int:
    """Retries the deliveries that are due (beat); tries them here, one after the other."""
    due = webhooks_due()
    for delivery_id in due:
        webhook_deliver(delivery_id=delivery_id)
    return len(due)
