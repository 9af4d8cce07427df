"""Anchoring checkpoints outside the log: the built-in TSA after each seal, outside backends when
their interval is due, and a sweeper that retries what failed or went missing."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import datetime, timedelta
from typing import Any

import structlog
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone
from veridict_verify.note import note_split

from timestamping import tsa
from timestamping.anchor_backends import (
    BUILTIN,
    AnchorBackend,
    AnchorFailed,
    AnchorReorganised,
    Evidence,
    backends_active,
)
from timestamping.models import Anchor, AnchorJob, AnchorReorg, Batch

log = structlog.get_logger(__name__)

Status = AnchorJob.Status
# Jobs the sweeper owns: tried again once next_attempt_at has passed.
OPEN = [Status.PENDING, Status.FAILED]
# What a backend's detail keeps of a transaction; dropped when a reorganisation makes the
# checkpoint be anchored again, so that the next try sends a new transaction.
TRANSACTION_DETAIL = (
    "nonce", "sent", "fees", "tx_hash", "block_number", "block_hash", "confirmations",
)  # fmt: skip
# Longest reason kept: enough for any error message, bounded against a hostile answer.
REASON_CHARS = 2000
_jitter = secrets.SystemRandom()

__all__ = [
    "BUILTIN",
    "anchor_job_confirm",
    "anchor_job_run",
    "anchor_jobs_due",
    "anchors_sweep",
    "batch_anchor_builtin",
    "batch_anchor_missing",
    "checkpoint_body",
    "retry_delay",
]


def checkpoint_body(batch: Batch) -> bytes:
    """The signed text of a batch's checkpoint: what every anchor time-stamps."""
    text, _ = note_split(batch.checkpoint)
    return text.encode()


def retry_delay(failures: int) -> float:
    """Seconds to wait after the failures-th failure: doubling from the base up to the maximum,
    then drawn between half and all of it, so that jobs failed by one outage spread out."""
    ceiling = min(
        settings.ANCHOR_RETRY_MAX_SECONDS,
        settings.ANCHOR_RETRY_BASE_SECONDS * 2 ** min(max(failures, 1) - 1, 32),
    )
    return _jitter.uniform(ceiling / 2, ceiling)


# --- recording outcomes ---------------------------------------------------------------------


def _evidence_store(
    *, backend: str, batch: Batch, evidence: Evidence, now: datetime, count_attempt: bool
) -> Anchor:
    """Stores the anchor (one live anchor per backend and batch: the first, or the one that
    replaces an anchor a reorganisation dropped) and closes the job, if there is one."""
    with transaction.atomic():
        dropped = Anchor.objects.filter(
            batch=batch, backend=backend, reorg__isnull=False, replaced_by__isnull=True
        ).first()
        try:
            # A savepoint: a concurrent try that stored first must not spoil this transaction.
            with transaction.atomic():
                anchor = Anchor.objects.create(
                    batch=batch,
                    backend=backend,
                    replaces=dropped,
                    type=evidence.type,
                    tsa=evidence.tsa,
                    tsr=evidence.tsr,
                    chain_id=evidence.chain_id,
                    tx_hash=evidence.tx_hash,
                    block_number=evidence.block_number,
                    block_hash=evidence.block_hash,
                    block_time=evidence.block_time,
                    anchored_at=now,
                )
        except IntegrityError:  # another worker anchored it first; the stored evidence stands
            anchor = Anchor.objects.get(batch=batch, backend=backend, reorg__isnull=True)
        job = AnchorJob.objects.select_for_update().filter(backend=backend, batch=batch).first()
        if job is not None and job.status not in (Status.ANCHORED, Status.FINAL):
            job.status = Status.FINAL if evidence.final else Status.ANCHORED
            job.attempts += count_attempt
            job.last_error = ""
            job.detail = {**job.detail, **evidence.detail}
            # An anchor that is not final yet is looked at again by the sweeper.
            job.next_attempt_at = None if evidence.final else now
            job.updated_at = now
            job.save()
    return anchor


def _job_failed(
    *,
    backend: str,
    batch: Batch,
    reason: str,
    now: datetime,
    count_attempt: bool,
    detail: dict[str, Any] | None = None,
) -> AnchorJob | None:
    """Records a failed try and when to try again; None if the batch got its anchor meanwhile
    (a try that outlived its lease while another one succeeded). `detail` is what the backend
    needs at the next try (a chain transaction sent but not mined yet)."""
    with transaction.atomic():
        job, _ = AnchorJob.objects.select_for_update().get_or_create(
            backend=backend, batch=batch, defaults={"created_at": now, "updated_at": now}
        )
        if job.status in (Status.ANCHORED, Status.FINAL):
            return None
        if Anchor.objects.filter(backend=backend, batch=batch, reorg__isnull=True).exists():
            return None
        job.status = Status.FAILED
        job.attempts += count_attempt
        job.failures += 1
        job.last_error = reason[:REASON_CHARS]
        if detail:
            job.detail = {**job.detail, **detail}
        job.next_attempt_at = now + timedelta(seconds=retry_delay(job.failures))
        job.updated_at = now
        job.save()
    return job


# --- the built-in TSA -------------------------------------------------------------------------


def batch_anchor_builtin(*, batch_id: int, now: datetime | None = None) -> Anchor:
    """Stamps a batch's checkpoint with the built-in TSA; idempotent (one anchor per batch).

    A failure is recorded as a failed job of backend "builtin" (the batch API, receipts and
    metrics show it; the sweep retries it) and raised again.
    """
    existing = Anchor.objects.filter(batch_id=batch_id, backend=BUILTIN).first()
    if existing is not None:
        return existing
    now = now or timezone.now()
    batch = Batch.objects.get(pk=batch_id)
    started = time.monotonic()
    try:
        tsr = tsa.tsa_stamp(hashlib.sha256(checkpoint_body(batch)).digest())
    except Exception as exc:
        job = _job_failed(
            backend=BUILTIN,
            batch=batch,
            reason=f"the built-in TSA failed: {exc}",
            now=now,
            count_attempt=True,
        )
        log.warning(
            "anchor_failed",
            backend=BUILTIN,
            batch=batch.number,
            attempts=job.attempts if job else None,
            reason=str(exc),
        )
        raise
    anchor = _evidence_store(
        backend=BUILTIN,
        batch=batch,
        evidence=Evidence(type="rfc3161", tsa=BUILTIN, tsr=tsr),
        now=now,
        count_attempt=True,
    )
    log.info(
        "batch_anchored",
        backend=BUILTIN,
        batch=batch.number,
        tree_size=batch.tree_size,
        tsr_bytes=len(tsr),
        seconds=round(time.monotonic() - started, 4),
    )
    return anchor


def batch_anchor_missing(*, limit: int = 100, now: datetime | None = None) -> int:
    """Stamps the batches the built-in TSA has not stamped yet (a stamp after a seal can be lost
    to a crash between the seal's commit and the stamp, or can fail), leaving alone those whose
    failed stamp waits for its retry time; returns how many it stamped."""
    now = now or timezone.now()
    unstamped = (
        Batch.objects.filter(
            ~Exists(Anchor.objects.filter(batch=OuterRef("pk"), backend=BUILTIN)),
            ~Exists(
                AnchorJob.objects.filter(
                    batch=OuterRef("pk"), backend=BUILTIN, next_attempt_at__gt=now
                )
            ),
        )
        .order_by("number")
        .values_list("pk", flat=True)[:limit]
    )
    stamped = 0
    for batch_id in list(unstamped):
        try:
            batch_anchor_builtin(batch_id=batch_id, now=now)
        except Exception:  # recorded on the job; the same cause would fail every later batch
            break
        stamped += 1
    return stamped


# --- outside backends -------------------------------------------------------------------------


def _backend_lock(name: str) -> None:
    """Makes schedulers of one backend take turns (PostgreSQL); SQLite's IMMEDIATE transactions
    already do."""
    if connection.vendor != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(f"veridict/anchor/{name}".encode()).digest()[:8], "big")
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [key - (1 << 63)])


def _slot(moment: datetime, interval: float) -> int:
    return int(moment.timestamp() // interval)


def _job_due_create(*, backend: AnchorBackend, now: datetime) -> AnchorJob | None:
    with transaction.atomic(durable=True):
        _backend_lock(backend.name)
        latest = Batch.objects.order_by("-number").first()
        if latest is None:
            return None
        jobs = AnchorJob.objects.filter(backend=backend.name)
        # One open job per backend: after an outage it is retried, rather than one job per
        # missed interval piling up and all anchoring at once when the backend is back.
        if jobs.filter(status__in=OPEN).exists():
            return None
        if jobs.filter(batch=latest).exists():
            return None  # nothing sealed since this backend's last anchor
        last = jobs.order_by("-created_at").values_list("created_at", flat=True).first()
        # Due once per interval-long slot of the clock, so the rate is one per interval however
        # often beat looks and however many entries arrive.
        if last is not None and _slot(now, backend.interval) <= _slot(last, backend.interval):
            return None
        return AnchorJob.objects.create(
            backend=backend.name,
            batch=latest,
            status=Status.PENDING,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )


def anchor_jobs_due(*, now: datetime | None = None) -> list[AnchorJob]:
    """For every active outside backend whose interval is due, a job to anchor the latest
    checkpoint (unless that backend has anchored it already or still retries an older one)."""
    now = now or timezone.now()
    created = []
    for backend in backends_active():
        job = _job_due_create(backend=backend, now=now)
        if job is not None:
            log.info("anchor_due", backend=backend.name, batch=job.batch.number)
            created.append(job)
    return created


def anchor_job_run(*, job_id: int, now: datetime | None = None) -> AnchorJob | None:
    """Tries a due job once; None if it is not due, is being tried elsewhere, is done, or its
    backend is no longer active. Safe to run twice: a try first takes a lease on the job."""
    now = now or timezone.now()
    job = AnchorJob.objects.select_related("batch").filter(pk=job_id).first()
    active = {backend.name: backend for backend in backends_active()}
    if job is None or job.backend not in active:
        return None
    backend = active[job.backend]
    # The lease: a conditional UPDATE that only one worker can win. A worker killed during the
    # try leaves the job to be taken over once the lease ends; no transaction stays open over
    # the network call.
    claimed = AnchorJob.objects.filter(pk=job_id, status__in=OPEN, next_attempt_at__lte=now).update(
        attempts=F("attempts") + 1,
        next_attempt_at=now + timedelta(seconds=backend.lease_seconds),
        updated_at=now,
    )
    if not claimed:
        return None
    job.refresh_from_db()
    batch = job.batch
    started = time.monotonic()
    try:
        evidence = backend.anchor(body=checkpoint_body(batch), detail=dict(job.detail))
    except Exception as exc:  # every failure is recorded; only unexpected ones get a traceback
        reason = str(exc) if isinstance(exc, AnchorFailed) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, AnchorFailed):
            log.exception("anchor_error", backend=backend.name, batch=batch.number)
        failed = _job_failed(
            backend=backend.name,
            batch=batch,
            reason=reason,
            now=now,
            count_attempt=False,
            detail=exc.detail if isinstance(exc, AnchorFailed) else None,
        )
        log.warning(
            "anchor_failed",
            backend=backend.name,
            batch=batch.number,
            attempts=job.attempts,
            retry_at=failed.next_attempt_at.isoformat() if failed else None,
            reason=reason,
            seconds=round(time.monotonic() - started, 4),
        )
        return failed or AnchorJob.objects.get(pk=job_id)
    _evidence_store(
        backend=backend.name, batch=batch, evidence=evidence, now=now, count_attempt=False
    )
    log.info(
        "batch_anchored",
        backend=backend.name,
        type=evidence.type,
        batch=batch.number,
        tree_size=batch.tree_size,
        attempts=job.attempts,
        tsr_bytes=len(evidence.tsr),
        seconds=round(time.monotonic() - started, 4),
    )
    return AnchorJob.objects.get(pk=job_id)


def anchor_job_confirm(*, job_id: int, now: datetime | None = None) -> AnchorJob | None:
    """Asks the backend whether anchored (not yet final) evidence is final now (a chain counts
    confirmations). A backend that cannot tell (its node is down) leaves the job anchored, with
    the reason in last_error, to be asked again at the next sweep."""
    now = now or timezone.now()
    job = (
        AnchorJob.objects.select_related("batch").filter(pk=job_id, status=Status.ANCHORED).first()
    )
    active = {backend.name: backend for backend in backends_active()}
    if job is None or job.backend not in active:
        return None
    later = now + timedelta(seconds=settings.ANCHOR_SWEEP_INTERVAL_SECONDS)
    try:
        final, detail = active[job.backend].confirm(detail=dict(job.detail))
    except AnchorReorganised as exc:
        return _anchor_reorg_record(job=job, reason=str(exc), now=now)
    except Exception as exc:  # one backend's outage must not stop the sweep
        reason = str(exc) if isinstance(exc, AnchorFailed) else f"{type(exc).__name__}: {exc}"
        log.warning(
            "anchor_confirm_failed", backend=job.backend, batch=job.batch.number, reason=reason
        )
        changes: dict[str, Any] = {"last_error": reason[:REASON_CHARS]}
        if isinstance(exc, AnchorFailed) and exc.detail:
            changes["detail"] = {**job.detail, **exc.detail}
        AnchorJob.objects.filter(pk=job_id, status=Status.ANCHORED).update(
            **changes, next_attempt_at=later, updated_at=now
        )
        return AnchorJob.objects.get(pk=job_id)
    with transaction.atomic(durable=True):
        updated = AnchorJob.objects.filter(pk=job_id, status=Status.ANCHORED).update(
            status=Status.FINAL if final else Status.ANCHORED,
            detail=detail,
            last_error="",
            next_attempt_at=None if final else later,
            updated_at=now,
        )
    if updated and final:
        log.info(
            "anchor_final",
            backend=job.backend,
            batch=job.batch.number,
            confirmations=detail.get("confirmations"),
        )
    return AnchorJob.objects.get(pk=job_id) if updated else None


def _anchor_reorg_record(*, job: AnchorJob, reason: str, now: datetime) -> AnchorJob | None:
    """A reorganisation dropped the job's anchor: marks that anchor (the row itself is never
    changed: receipts leave a marked anchor out) and makes the job due again, without the old
    transaction, so that its next try anchors the checkpoint with a new one."""
    with transaction.atomic(durable=True):
        locked = (
            AnchorJob.objects.select_for_update().filter(pk=job.pk, status=Status.ANCHORED).first()
        )
        if locked is None:  # another sweep got here first
            return None
        anchor = Anchor.objects.get(backend=job.backend, batch=job.batch, reorg__isnull=True)
        AnchorReorg.objects.create(anchor=anchor, detected_at=now, reason=reason[:REASON_CHARS])
        detail = {k: v for k, v in locked.detail.items() if k not in TRANSACTION_DETAIL}
        detail["reorganised"] = [*detail.get("reorganised", []), anchor.tx_hash]
        locked.status = Status.PENDING
        locked.detail = detail
        locked.last_error = reason[:REASON_CHARS]
        locked.next_attempt_at = now
        locked.updated_at = now
        locked.save()
    log.warning(
        "anchor_reorganised",
        backend=job.backend,
        batch=job.batch.number,
        tx_hash=anchor.tx_hash,
        reason=reason,
    )
    return locked


def anchors_sweep(
    *, now: datetime | None = None, limit: int = 50, budget_seconds: float = 60.0
) -> dict[str, int]:
    """Stamps batches the built-in TSA missed, retries due jobs of active backends and asks
    about anchored ones not final yet; starts no new try once budget_seconds have passed (the
    next sweep goes on). Everything it acts on is read from the database, so recovery never
    depends on the broker having kept a message."""
    started = time.monotonic()
    now = now or timezone.now()
    stamped = batch_anchor_missing(now=now)
    names = [backend.name for backend in backends_active()]
    due = list(
        AnchorJob.objects.filter(backend__in=names, status__in=OPEN, next_attempt_at__lte=now)
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    retried = []
    for pk in due:
        if time.monotonic() - started > budget_seconds:
            break
        retried.append(anchor_job_run(job_id=pk, now=now))
    unconfirmed = list(
        AnchorJob.objects.filter(
            backend__in=names, status=Status.ANCHORED, next_attempt_at__lte=now
        )
        .order_by("next_attempt_at")
        .values_list("pk", flat=True)[:limit]
    )
    confirmed = [anchor_job_confirm(job_id=pk, now=now) for pk in unconfirmed]
    return {
        "builtin_stamped": stamped,
        "retried": sum(job is not None for job in retried),
        "anchored": sum(job is not None and job.status != Status.FAILED for job in retried),
        "confirmed": sum(job is not None and job.status == Status.FINAL for job in confirmed),
    }
