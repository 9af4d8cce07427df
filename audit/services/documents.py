"""Registering documents: a SHA-256 (or, for private ones, a salted commitment) as a ledger
entry, linked to the decisions it informed, the file kept when its system stores documents."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction

from audit import vault
from audit.models import AISystem, Decision, Document
from timestamping.services import entry_append


class UnknownDecisions(LookupError):
    """Some of the decisions a document names are not decisions of its system."""

    def __init__(self, decision_ids: Sequence[str]) -> None:
        super().__init__(f"no decision {', '.join(decision_ids)} of this AI system")
        self.decision_ids = list(decision_ids)


def document_commitment(*, salt: bytes, sha256: str) -> str:
    """SHA-256(salt || the 32-byte digest), hex: what a private document's leaf holds."""
    return hashlib.sha256(salt + bytes.fromhex(sha256)).hexdigest()


def _decisions_of(system: AISystem, decision_ids: Sequence[str]) -> list[Decision]:
    wanted = list(dict.fromkeys(decision_ids))
    if not wanted:
        return []
    try:
        found = list(
            Decision.objects.filter(system=system, entry__uuid__in=wanted).select_related("entry")
        )
    except ValidationError as exc:  # not UUIDs: the view validates, but stay total
        raise UnknownDecisions(wanted) from exc
    known = {str(decision.entry.uuid) for decision in found}
    missing = [decision_id for decision_id in wanted if decision_id not in known]
    if missing:
        raise UnknownDecisions(missing)
    return found


def _file_store(content: File) -> str:
    """Saves the bytes under a random name (never the client's file name, which may identify
    someone) and returns the storage name."""
    field = Document._meta.get_field("file")
    name = field.generate_filename(None, uuid.uuid4().hex)  # type: ignore[attr-defined]
    try:
        return default_storage.save(name, content)
    finally:
        content.close()  # the temporary file was moved: closing now spares a warning later


def _file_attach(system: AISystem, document: Document, content: File | None) -> Document:
    """A document registered before without its file gets it now: same digest, same bytes."""
    if content is None or document.file or not system.store_documents:
        return document
    return _stored_file_attach(document, _file_store(content))


def _stored_file_attach(document: Document, name: str) -> Document:
    # Conditional, so that two concurrent uploads of the same bytes keep one file.
    if Document.objects.filter(pk=document.pk, file="").update(file=name):
        document.file.name = name
    else:
        default_storage.delete(name)
        document.refresh_from_db(fields=["file"])
    return document


def document_register(
    *,
    system: AISystem,
    sha256: str,
    size: int | None = None,
    media_type: str | None = None,
    private: bool = False,
    decision_ids: Sequence[str] = (),
    content: File | None = None,
) -> tuple[Document, bool]:
    """Registers a document of the system and appends its entry, in one durable transaction;
    (document, created).

    `content` (the uploaded bytes, already hashed to `sha256`) is stored only when the system
    stores documents. The same digest registered again for the same system returns the first
    registration: its privacy and links stand, and only a missing file is added.
    """
    sha256 = sha256.lower()
    decisions = _decisions_of(system, decision_ids)
    existing = Document.objects.filter(system=system, sha256=sha256).first()
    if existing is not None:
        return _file_attach(system, existing, content), False
    # Stored before the transaction, so that a 201 saying "stored" is never ahead of the file;
    # removed again if the registration does not commit.
    file_name = _file_store(content) if content is not None and system.store_documents else ""
    try:
        with transaction.atomic(durable=True):
            try:
                # One savepoint for entry and row: losing a race to the same digest undoes both.
                with transaction.atomic():
                    document = _document_create(
                        system, sha256, size, media_type, private, decisions, file_name
                    )
                    return document, True
            except IntegrityError:
                existing = Document.objects.filter(system=system, sha256=sha256).first()
                if existing is None:
                    raise
    except BaseException:
        if file_name:
            default_storage.delete(file_name)
        raise
    # Lost the race to a concurrent registration of the same digest: the bytes already moved
    # into storage serve it if it has none.
    if file_name:
        return _stored_file_attach(existing, file_name), False
    return existing, False


def _document_create(
    system: AISystem,
    sha256: str,
    size: int | None,
    media_type: str | None,
    private: bool,
    decisions: list[Decision],
    file_name: str,
) -> Document:
    salt = vault.salt_new() if private else None
    envelope: dict[str, Any] = {"type": "document", "system": system.slug}
    if salt is not None:
        # Whoever holds the file can check it against the receipt; nobody can tell from the
        # leaf which of a few guessed documents it is.
        envelope["commitment"] = document_commitment(salt=salt, sha256=sha256)
    else:
        envelope["sha256"] = sha256
    envelope |= {
        "size": size,
        "media_type": media_type or None,
        "informed": sorted(str(decision.entry.uuid) for decision in decisions),
    }
    entry, _ = entry_append(
        kind="document", envelope=envelope, stream=vault.system_stream(system_id=system.pk)
    )
    document = Document.objects.create(
        system=system,
        entry=entry,
        sha256=sha256,
        size=size,
        media_type=media_type or "",
        private=private,
        salt=salt,
        file=file_name,
    )
    if decisions:
        document.decisions.set(decisions)
    return document
