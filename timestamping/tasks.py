"""Celery tasks of the log: thin wrappers around services, safe to run twice."""

from __future__ import annotations

from celery import shared_task

from timestamping.services import batch_seal
from timestamping.services.anchoring import batch_anchor_missing


@shared_task(name="timestamping.batch_seal")
def batch_seal_task() -> int:
    """Seals what is pending, then stamps any batch whose stamp was lost; returns the tree size."""
    batch = batch_seal()
    batch_anchor_missing()
    return batch.tree_size if batch else 0
