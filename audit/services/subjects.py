"""Subjects: the people decided about, their data keys, and erasure by crypto-shredding."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import structlog
from django.db import connection, transaction
from django.utils import timezone

from audit import vault
from audit.models import AISystem, Decision, Erasure, Subject
from review.erasure import review_erasure_apply
from timestamping.services import entry_append

log = structlog.get_logger(__name__)


def subject_key_context(subject: Subject) -> bytes:
    return f"subject:{subject.system_id}:{bytes(subject.lookup).hex()}".encode()


def _key_new(subject: Subject) -> bytes:
    return vault.data_key_wrap(vault.data_key_new(), context=subject_key_context(subject))


def subject_key(subject: Subject) -> bytes:
    """The subject's data key; VaultError once the subject is erased."""
    if subject.wrapped_key is None:
        raise vault.VaultError("the subject's personal data was erased")
    return vault.data_key_unwrap(bytes(subject.wrapped_key), context=subject_key_context(subject))


def decision_personal_data(decision: Decision) -> dict[str, Any] | None:
    """The decision's personal fields and salts, or None once its subject was erased."""
    try:
        key = subject_key(decision.subject)
        return vault.open_json(
            key, bytes(decision.personal_data), context=f"decision:{decision.entry.uuid}".encode()
        )
    except vault.VaultError:
        return None


def decision_client_id(decision: Decision) -> str | None:
    """The AI system's id for the decision, or None once its subject was erased: it is stored
    only in the decision's personal part."""
    personal = decision_personal_data(decision)
    return None if personal is None else personal["fields"]["client_decision_id"]


def decision_erased(decision: Decision) -> bool:
    """Whether the decision's personal data was erased. A subject that decides again after an
    erasure gets a new key: what came before stays erased, so the time of the last erasure
    tells which decisions are readable."""
    erased_at = decision.subject.erased_at
    return erased_at is not None and decision.received_at <= erased_at


def subject_by_reference(*, system: AISystem, reference: str) -> Subject | None:
    lookup = vault.subject_lookup(system_id=system.pk, reference=reference)
    return Subject.objects.filter(system=system, lookup=lookup).first()


def subject_get_or_create(*, system: AISystem, reference: str) -> Subject:
    """The subject with this reference in this system, with a data key; a subject erased before
    gets a new key, so what was erased stays unreadable.

    One statement, an upsert, which also locks the subject's row until the caller's transaction
    ends: subject_erase takes the same lock, so a decision is either named by an erasure or
    sealed under a key that outlives it, never sealed under a key an erasure destroys before the
    decision commits. Only the fields it returns are loaded; the others load when read.
    """
    lookup = vault.subject_lookup(system_id=system.pk, reference=reference)
    # The key is wrapped for the row's (system, lookup), not its id: ready before the row is.
    fresh_key = _key_new(Subject(system=system, lookup=lookup))
    table = connection.ops.quote_name(Subject._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (system_id, lookup, wrapped_key) VALUES (%s, %s, %s) "  # noqa: S608
            "ON CONFLICT (system_id, lookup) DO UPDATE "
            f"SET wrapped_key = COALESCE({table}.wrapped_key, EXCLUDED.wrapped_key) "
            "RETURNING id, wrapped_key",
            [system.pk, lookup, fresh_key],
        )
        pk, wrapped_key = cursor.fetchone()
    subject = Subject.from_db(
        connection.alias,
        ["id", "system_id", "lookup", "wrapped_key"],
        [pk, system.pk, lookup, wrapped_key],
    )
    subject.system = system
    return subject


def erasure_latest(*, subject: Subject) -> Erasure | None:
    return (
        Erasure.objects.select_related("entry")
        .filter(subject=subject)
        .order_by("-erased_at", "-pk")
        .first()
    )


def erasure_decisions_opening(*, erasure: Erasure) -> dict[str, Any] | None:
    """What opens a subject erasure's `decisions_commitment`: SHA-256 of the salt's bytes and
    the RFC 8785 bytes of the sorted decision entry ids is the commitment (docs/receipts.md)."""
    if erasure.decisions_salt is None:
        return None
    return {
        "erasure_entry": str(erasure.entry.uuid),
        "salt_b64": base64.b64encode(bytes(erasure.decisions_salt)).decode(),
        "decisions": list(erasure.decision_ids),
    }


def subject_erase(
    *,
    subject: Subject,
    reason: str,
    note: str = "",
    erased_by: Any = None,
    before: datetime | None = None,
) -> Erasure | None:
    """Destroys the subject's data key and appends the erasure, committing to every decision of
    the subject, to the log; None when there is nothing to erase (erased already, or, with
    `before`, the subject has a decision received at or after it).

    Receipts keep verifying: leaves hold only salted commitments, whose salts were encrypted
    under the destroyed key. The free-text note and the list of decisions are only committed
    in the leaf: a list in clear would tell the world that those decisions were about one
    person. The opening (list and salt) is kept with the erasure, for staff to show.

    The decisions' lookups (client id, Idempotency-Key, request digest) are replaced by random
    bytes, so that not even the master key's holder can match them to a guessed applicant
    number afterwards. A retry of an erased decision is then recorded as a new one: by then the
    request is no retry but personal data sent again, which the system answers for.
    """
    if reason not in Erasure.Reason.values:
        raise ValueError(f"reason must be one of {Erasure.Reason.values}")
    with transaction.atomic(durable=True):
        locked = (
            Subject.objects.select_for_update(of=("self",))
            .select_related("system")
            .filter(pk=subject.pk)
        ).first()
        if locked is None or locked.wrapped_key is None:
            return None
        decisions = Decision.objects.filter(subject=locked)
        # Checked under the lock: a decision recorded since the caller chose this subject.
        if before is not None and decisions.filter(received_at__gte=before).exists():
            return None
        rows = list(decisions.select_related("entry").only("pk", "entry__uuid"))
        decision_ids = sorted(str(row.entry.uuid) for row in rows)
        salt = vault.salt_new() if note else None
        decisions_salt = vault.salt_new()
        entry, _ = entry_append(
            kind="erasure",
            stream=vault.system_stream(system_id=locked.system_id),
            envelope={
                "type": "erasure",
                "system": locked.system.slug,
                "reason": reason,
                "note": vault.commitment(salt=salt, value=note) if salt else None,
                "decisions_commitment": vault.commitment(salt=decisions_salt, value=decision_ids),
            },
        )
        now = timezone.now()
        erasure = Erasure.objects.create(
            system=locked.system,
            entry=entry,
            reason=reason,
            subject=locked,
            decisions=len(decision_ids),
            decision_ids=decision_ids,
            decisions_salt=decisions_salt,
            note=note,
            note_salt=salt,
            erased_by=erased_by if getattr(erased_by, "pk", None) else None,
            erased_at=now,
        )
        for row in rows:
            row.client_id_lookup = vault.lookup_unlinked()
            row.idempotency_lookup = None
            row.request_digest = vault.lookup_unlinked()
        Decision.objects.bulk_update(
            rows, ["client_id_lookup", "idempotency_lookup", "request_digest"], batch_size=1000
        )
        review_erasure_apply(erasure=erasure, decisions=decisions)
        locked.wrapped_key = None
        locked.erased_at = now
        locked.erasure_entry = entry
        locked.save(update_fields=["wrapped_key", "erased_at", "erasure_entry"])
    subject.wrapped_key, subject.erased_at, subject.erasure_entry = None, now, entry
    log.info(
        "subject_erased",
        system=locked.system.slug,
        subject=locked.pk,
        entry=str(entry.uuid),
        reason=reason,
        decisions=len(decision_ids),
        erased_by=erasure.erased_by_id,
    )
    return erasure
