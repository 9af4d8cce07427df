"""Anchoring checkpoints outside the log: RFC 3161 time-stamps of the checkpoint body."""

from __future__ import annotations

import hashlib

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone
from veridict_verify.note import note_split

from timestamping import tsa
from timestamping.models import Anchor, Batch

log = structlog.get_logger(__name__)

BUILTIN = "builtin"


def checkpoint_body(batch: Batch) -> bytes:
    """The signed text of a batch's checkpoint: what every anchor time-stamps."""
    text, _ = note_split(batch.checkpoint)
    return text.encode()


def batch_anchor_builtin(*, batch_id: int) -> Anchor:
    """Stamps a batch's checkpoint with the built-in TSA; idempotent (one anchor per batch)."""
    existing = Anchor.objects.filter(batch_id=batch_id, type="rfc3161", tsa=BUILTIN).first()
    if existing is not None:
        return existing
    batch = Batch.objects.get(pk=batch_id)
    tsr = tsa.tsa_stamp(hashlib.sha256(checkpoint_body(batch)).digest())
    try:
        with transaction.atomic():
            anchor = Anchor.objects.create(
                batch=batch, type="rfc3161", tsa=BUILTIN, tsr=tsr, anchored_at=timezone.now()
            )
    except IntegrityError:  # another worker stamped it first; keep the stored one
        return Anchor.objects.get(batch_id=batch_id, type="rfc3161", tsa=BUILTIN)
    log.info("batch_anchored", batch=batch.number, tsa=BUILTIN)
    return anchor


def batch_anchor_missing(*, limit: int = 100) -> int:
    """Stamps the batches the built-in TSA has not stamped yet (a stamp after a seal can be lost
    to a crash between the seal's commit and the stamp); returns how many it stamped."""
    unstamped = (
        Batch.objects.exclude(anchors__type="rfc3161", anchors__tsa=BUILTIN)
        .order_by("number")
        .values_list("pk", flat=True)[:limit]
    )
    stamped = 0
    for batch_id in unstamped:
        batch_anchor_builtin(batch_id=batch_id)
        stamped += 1
    return stamped
