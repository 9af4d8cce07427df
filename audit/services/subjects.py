"""Subjects: the people decided about, their data keys, and erasure by crypto-shredding."""

from __future__ import annotations

import structlog
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import vault
from audit.models import AISystem, Decision, Subject
from timestamping.services import entry_append

log = structlog.get_logger(__name__)


def _key_context(subject: Subject) -> bytes:
    return f"subject:{subject.system_id}:{bytes(subject.lookup).hex()}".encode()


def subject_key(subject: Subject) -> bytes:
    """The subject's data key; VaultError once the subject is erased."""
    if subject.wrapped_key is None:
        raise vault.VaultError("the subject's personal data was erased")
    return vault.data_key_unwrap(bytes(subject.wrapped_key), context=_key_context(subject))


def subject_get_or_create(*, system: AISystem, reference: str) -> Subject:
    """The subject with this reference in this system, with a data key; a subject erased before
    gets a new key, so what was erased stays unreadable."""
    lookup = vault.subject_lookup(system_id=system.pk, reference=reference)
    subject = Subject.objects.filter(system=system, lookup=lookup).first()
    if subject is None:
        subject = Subject(system=system, lookup=lookup)
        subject.wrapped_key = vault.data_key_wrap(
            vault.data_key_new(), context=_key_context(subject)
        )
        try:
            with transaction.atomic():  # a concurrent first decision for the same person
                subject.save()
        except IntegrityError:
            subject = Subject.objects.get(system=system, lookup=lookup)
    if subject.wrapped_key is None:
        subject.wrapped_key = vault.data_key_wrap(
            vault.data_key_new(), context=_key_context(subject)
        )
        subject.save(update_fields=["wrapped_key"])
    return subject


def subject_erase(*, system: AISystem, reference: str, reason: str) -> Subject | None:
    """Destroys the subject's data key and appends the erasure to the log; None if unknown.

    Receipts keep verifying: leaves hold only salted commitments, whose salts were encrypted
    under the destroyed key."""
    lookup = vault.subject_lookup(system_id=system.pk, reference=reference)
    with transaction.atomic():
        subject = Subject.objects.select_for_update().filter(system=system, lookup=lookup).first()
        if subject is None or subject.wrapped_key is None:
            return subject
        decisions = Decision.objects.filter(subject=subject).select_related("entry")
        entry, _ = entry_append(
            kind="erasure",
            envelope={
                "type": "erasure",
                "system": system.slug,
                "reason": reason,
                "decisions": sorted(str(d.entry.uuid) for d in decisions),
            },
        )
        subject.wrapped_key = None
        subject.erased_at = timezone.now()
        subject.erasure_entry = entry
        subject.save(update_fields=["wrapped_key", "erased_at", "erasure_entry"])
    log.info("subject_erased", system=system.slug, subject=subject.pk, reason=reason)
    return subject
