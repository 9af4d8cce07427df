"""Celery tasks of the log: thin wrappers around services, safe to run twice.

Sealing and anchoring are separate tasks, so a slow or failing anchor backend never holds up a
seal; every task reads what to do from the database, so a lost message is made good by the next
beat or sweep.
"""

from __future__ import annotations

import time

from celery import shared_task
from django.conf import settings

from timestamping import metrics
from timestamping.services import batch_seal
from timestamping.services.anchoring import anchor_job_run, anchor_jobs_due, anchors_sweep

# A backlog is sealed batch after batch for at most this long in one task, half its soft limit.
SEAL_BUDGET_SECONDS = 120

# A remote TSA answers within its timeout (10 s by default), so an anchoring run is far below
# these; the broker's visibility timeout (settings) is longer than the hard limits.
ANCHOR_SOFT_LIMIT = 120
ANCHOR_HARD_LIMIT = 150


@shared_task(
    name="timestamping.batch_seal",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=240,
    time_limit=300,
)
def batch_seal_task() -> int:
    """Seals what is pending, batch after batch while they come out full, so that a backlog past
    SEAL_MAX_ENTRIES is sealed now rather than one batch per beat interval (which could break
    the MMD every SET promised); returns the tree size (0 if nothing was sealed)."""
    started = time.monotonic()
    tree_size = 0
    while True:
        seal_started = time.monotonic()
        batch = batch_seal()
        metrics.seal_recorded(batch=batch, seconds=time.monotonic() - seal_started)
        if batch is None:
            break
        tree_size = batch.tree_size
        # Stops well inside the soft time limit; the next beat goes on where this one stopped.
        full = batch.tree_size - batch.prev_tree_size >= settings.SEAL_MAX_ENTRIES
        if not full or time.monotonic() - started > SEAL_BUDGET_SECONDS:
            break
    metrics.mmd_check()
    return tree_size


@shared_task(
    name="timestamping.anchors_due",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=ANCHOR_SOFT_LIMIT,
    time_limit=ANCHOR_HARD_LIMIT,
)
def anchors_due_task() -> int:
    """Creates a job for each outside backend whose interval is due and tries it; returns how
    many jobs it created."""
    jobs = anchor_jobs_due()
    for job in jobs:
        anchor_job_run(job_id=job.pk)
    return len(jobs)


@shared_task(
    name="timestamping.anchors_sweep",
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=ANCHOR_SOFT_LIMIT,
    time_limit=ANCHOR_HARD_LIMIT,
)
def anchors_sweep_task() -> dict[str, int]:
    """Retries failed and unfinished anchors whose backoff has passed, and built-in stamps that
    were lost or failed."""
    return anchors_sweep()
