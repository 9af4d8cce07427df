"""Retention: personal data and stored files past their AI system's retention period are erased."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from audit import vault
from audit.models import MIN_RETENTION_DAYS, AISystem, Document, Erasure, Subject
from audit.services.subjects import subject_erase
from timestamping.services import entry_append

log = structlog.get_logger(__name__)


@dataclass
class RetentionSweep:
    subjects_erased: int = 0
    files_erased: int = 0
    files_failed: int = 0
    # A limit was reached: more may be due, so the task runs again.
    more: bool = False


def retention_cutoff(*, system: AISystem, now: datetime) -> datetime:
    """What was received before this is past retention. Never less than six months (EU AI Act
    Art. 19/26), even if a row escaped the model's validator."""
    return now - timedelta(days=max(system.retention_days, MIN_RETENTION_DAYS))


def subjects_past_retention(*, system: AISystem, cutoff: datetime) -> QuerySet[Subject]:
    """Subjects with a data key all of whose decisions were received before the cutoff."""
    return (
        Subject.objects.filter(system=system, wrapped_key__isnull=False)
        .annotate(last_received_at=Max("decisions__received_at"))
        .filter(last_received_at__lt=cutoff)
        .order_by("pk")
    )


def documents_past_retention(*, system: AISystem, cutoff: datetime) -> QuerySet[Document]:
    return (
        Document.objects.filter(system=system, registered_at__lt=cutoff)
        .exclude(file="")
        .order_by("pk")
    )


def document_file_erase(
    *, document: Document, reason: str, before: datetime | None = None
) -> Erasure | None:
    """Deletes a document's stored file and appends the erasure to the log; the row, its digest
    and its entry stay. None when there is no file (or, with `before`, it is not yet due)."""
    with transaction.atomic(durable=True):
        locked = (
            Document.objects.select_for_update(of=("self",))
            .select_related("system", "entry")
            .filter(pk=document.pk)
            .first()
        )
        if locked is None or not locked.file:
            return None
        if before is not None and locked.registered_at >= before:
            return None
        name = locked.file.name
        entry, _ = entry_append(
            kind="file_erasure",
            stream=vault.system_stream(system_id=locked.system_id),
            envelope={
                "type": "file_erasure",
                "system": locked.system.slug,
                "reason": reason,
                "document": str(locked.entry.uuid),
            },
        )
        erasure = Erasure.objects.create(
            system=locked.system,
            entry=entry,
            reason=reason,
            document=locked,
            erased_at=timezone.now(),
        )
        storage = locked.file.storage
        locked.file = ""
        locked.save(update_fields=["file"])
        # Last, inside the transaction: if deleting fails, nothing commits and the next sweep
        # tries again; if the commit fails after it, the row still names the file and the next
        # sweep completes the erasure (deleting a missing file is no error).
        storage.delete(name)
    log.info(
        "document_file_erased",
        system=locked.system.slug,
        document=locked.pk,
        entry=str(entry.uuid),
        reason=reason,
    )
    return erasure


def retention_sweep(*, now: datetime | None = None, limit: int = 500) -> RetentionSweep:
    """Erases, in every AI system, the subjects all of whose decisions are past its retention
    period and the stored files of documents registered before it; each erasure its own
    transaction and entry. Idempotent; at most `limit` subjects and `limit` files a run."""
    now = now or timezone.now()
    sweep = RetentionSweep()
    subjects_left = files_left = limit
    for system in AISystem.objects.order_by("pk"):
        cutoff = retention_cutoff(system=system, now=now)
        for subject in subjects_past_retention(system=system, cutoff=cutoff)[:subjects_left]:
            subjects_left -= 1
            if subject_erase(subject=subject, reason=Erasure.Reason.RETENTION, before=cutoff):
                sweep.subjects_erased += 1
        for document in documents_past_retention(system=system, cutoff=cutoff)[:files_left]:
            files_left -= 1
            try:
                erased = document_file_erase(
                    document=document, reason=Erasure.Reason.RETENTION, before=cutoff
                )
            except OSError:
                # One unreadable volume must not stop every other erasure; retried next run.
                log.exception(
                    "document_file_erase_failed", system=system.slug, document=document.pk
                )
                sweep.files_failed += 1
                continue
            if erased:
                sweep.files_erased += 1
    sweep.more = subjects_left == 0 or files_left == 0
    log.info(
        "retention_swept",
        subjects_erased=sweep.subjects_erased,
        files_erased=sweep.files_erased,
        files_failed=sweep.files_failed,
        more=sweep.more,
    )
    return sweep
