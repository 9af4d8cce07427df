"""Reads of documents: who may see which registrations of a digest, and where each sits in the
log."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from audit.models import AISystem, Document
from timestamping.selectors import batch_of_entry

# A digest registered by more systems than this lists the oldest ones: the earliest
# registration is what proves existence, and the lookup is public.
LOOKUP_LIMIT = 100


@dataclass(frozen=True)
class LogPosition:
    batch: int
    leaf_index: int


def documents_visible(*, sha256: str, system: AISystem | None) -> list[Document]:
    """The registrations of a digest that a reader may see, oldest first: public documents of
    public systems for anyone, and all of its own documents for a system's key."""
    visible = Q(private=False, system__is_public=True)
    if system is not None:
        visible |= Q(system=system)
    return list(
        Document.objects.filter(visible, sha256=sha256.lower())
        .select_related("system", "entry")
        .order_by("entry__seq")[:LOOKUP_LIMIT]
    )


def document_position(*, document: Document) -> LogPosition | None:
    """The batch and leaf index that sealed the document's entry, or None while it is pending."""
    batch = batch_of_entry(entry=document.entry)
    if batch is None:
        return None
    return LogPosition(batch=batch.number, leaf_index=batch.leaf_index_of(document.entry.seq))
