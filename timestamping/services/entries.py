"""Appending entries to the log, each with its signed entry timestamp (SET)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from veridict_verify import merkle
from veridict_verify.formats import SignedEntryTimestamp, format_time

from timestamping import canonical, keys
from timestamping.models import Entry

KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")
# A stream label is opaque to the ledger: the domain chooses one per log it wants kept apart
# (audit: a keyed hash per AI system). Short and plain, since batch headers list them.
STREAM = re.compile(r"[0-9a-z][0-9a-z_.-]{0,63}")
# PostgreSQL advisory lock between appenders (shared) and the sealer's watermark (exclusive).
SEQ_LOCK = 0x5665726964696374  # "Veridict"


def seq_lock_share() -> None:
    """Held by every transaction that appends, from before it draws a seq until it ends.

    The sealer takes the same lock exclusively to learn a seq below which every entry is
    committed (services/sealing.py). An advisory lock, unlike a table lock, never waits for
    autovacuum. SQLite needs none: its writers are serialised already.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock_shared(%s)", [SEQ_LOCK])


def _entry_insert(entry: Entry) -> Entry:
    """INSERT ... RETURNING seq, written by hand: the ORM takes longer to build the statement
    than the database takes to run it, on every request."""
    fields = [field for field in Entry._meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(Entry._meta.db_table)} "  # noqa: S608
            f"({', '.join(quote(field.column) for field in fields)}) "
            f"VALUES ({', '.join(['%s'] * len(fields))}) "
            f"RETURNING {quote(Entry._meta.pk.column)}",
            [field.get_db_prep_save(getattr(entry, field.attname), connection) for field in fields],
        )
        (entry.seq,) = cursor.fetchone()
    entry._state.adding = False
    entry._state.db = connection.alias
    return entry


class EnvelopeError(ValueError):
    """The envelope cannot be canonicalised (RFC 8785 / I-JSON): the caller answers 400."""


def leaf_canonical(
    *, entry_id: uuid.UUID, kind: str, received_at: str, envelope: Any, stream: str = ""
) -> bytes:
    """The leaf's canonical bytes of DESIGN.md: RFC 8785 over version, id, kind, time and body,
    and the stream, if any. A leaf without a stream has no `stream` member at all, so leaves
    written before streams existed are byte for byte what they were."""
    leaf = {"v": 1, "id": str(entry_id), "kind": kind, "received_at": received_at, "body": envelope}
    if stream:
        leaf["stream"] = stream
    try:
        return canonical.dumps(leaf)
    except (canonical.CanonicalizationError, TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope is not I-JSON: {exc}") from exc


def _kind_check(kind: str, stream: str = "") -> None:
    if not KIND.fullmatch(kind):
        raise EnvelopeError(f"kind {kind!r} is not a short lower-case name")
    if stream and not STREAM.fullmatch(stream):
        raise EnvelopeError(f"stream {stream!r} is not a short lower-case label")


def entry_build(
    *,
    kind: str,
    envelope: Any,
    received_at: datetime,
    entry_id: uuid.UUID | None = None,
    sign: Callable[[str], str] = keys.sign,
    stream: str = "",
) -> Entry:
    """An unsaved entry: its canonical leaf, leaf hash and SET. What entry_append stores, and
    what a bulk writer stores thousands of in one INSERT (with one `keys.signer()` for all)."""
    _kind_check(kind, stream)
    entry_id = entry_id or uuid.uuid4()
    received_text = format_time(received_at)
    leaf = leaf_canonical(
        entry_id=entry_id, kind=kind, received_at=received_text, envelope=envelope, stream=stream
    )
    leaf_hash = merkle.leaf_hash(leaf)
    promise = SignedEntryTimestamp(
        origin=settings.LOG_ORIGIN,
        leaf_hash=leaf_hash,
        received_at=received_text,
        mmd_seconds=settings.MMD_SECONDS,
    )
    return Entry(
        uuid=entry_id,
        kind=kind,
        received_at=received_at,
        canonical=leaf,
        leaf_hash=leaf_hash,
        set_note=sign(promise.body()),
        stream=stream,
    )


def entry_append(
    *,
    kind: str,
    envelope: dict[str, Any],
    idempotency_key: str | None = None,
    stream: str = "",
) -> tuple[Entry, bool]:
    """Stores an entry and its SET; returns (entry, created). The one way entries are written.

    `stream` (opaque, chosen by the domain) puts the entry in that stream's own tree as well
    when it is sealed; the leaf names it.

    Joins the caller's transaction, so a domain record and its entry commit together. A second call
    with the same idempotency key returns the first entry, whatever its envelope: callers that must
    tell a retry from a conflicting request compare envelopes themselves.
    """
    _kind_check(kind, stream)
    if idempotency_key is not None:
        existing = Entry.objects.filter(idempotency_key=idempotency_key).first()
        if existing is not None:
            return existing, False
    entry = entry_build(kind=kind, envelope=envelope, received_at=timezone.now(), stream=stream)
    entry.idempotency_key = idempotency_key
    # No savepoint of its own when it joins the caller's transaction (each is a round trip): what
    # fails in here leaves that transaction to roll back, entry and all.
    with transaction.atomic(savepoint=False):
        seq_lock_share()
        if idempotency_key is None:
            return _entry_insert(entry), True
        try:
            # A savepoint: losing the race to a concurrent request with the same key must not
            # spoil the caller's transaction.
            with transaction.atomic():
                _entry_insert(entry)
        except IntegrityError:
            return Entry.objects.get(idempotency_key=idempotency_key), False
    return entry, True
