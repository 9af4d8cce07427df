"""Evidence packages (docs/evidence.md): one AI system's log over a range of batches, with the
openings an auditor needs, as gzip-compressed NDJSON, optionally encrypted to an age key.

Written as a stream of chunks in bounded memory: leaves are read a page at a time, each page's
decisions and review steps in one query each, personal parts decrypted row by row."""

from __future__ import annotations

import base64
import gzip
import json
import os
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import IO, Any

import pyrage
from django.conf import settings
from django.utils import timezone
from veridict_verify.formats import format_time

from audit import vault
from audit.models import AISystem, Decision
from audit.services.subjects import decision_erased, decision_personal_data
from review.models import ReviewAction, ReviewItem
from review.services.common import text_opening
from timestamping import tsa
from timestamping.models import Entry, LogKey
from timestamping.selectors import (
    StreamRange,
    batch_anchors,
    stream_head_leaves,
    stream_range,
    stream_range_heads,
)

VERSION = "veridict.evidence/v1"
# Who may export any system's package besides the system's own key (staff/roles.py).
EXPORT_PERMISSION = "audit.export_evidence"
# Committed decision fields that every package opens; explanation and inputs only when asked.
DECISION_OPENINGS = ("protected_attributes", "owner", "client_decision_id")
# The key of a review step's opening: the leaf member it opens (body.text_commitment).
REVIEW_TEXT = "text_commitment"
CHUNK_BYTES = 1 << 16
PAGE = 1000


class EvidenceError(ValueError):
    """A request for a package that cannot be met (a bad recipient key)."""


@dataclass(frozen=True)
class EvidenceOpenings:
    explanation: bool = False
    inputs: bool = False

    def decision_fields(self) -> tuple[str, ...]:
        extra = ("explanation",) * self.explanation + ("inputs",) * self.inputs
        return DECISION_OPENINGS + extra


def evidence_bounds(
    *, date_from: date | None, date_to: date | None
) -> tuple[datetime | None, datetime | None]:
    """The range's batches are those sealed from `date_from` 00:00 UTC up to the end of
    `date_to` (24:00 UTC): whole batches, so that the range starts and ends where a header
    states the system log's size and root."""
    since = datetime.combine(date_from, time.min, tzinfo=UTC) if date_from else None
    before = (
        datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=UTC)
        if date_to and date_to < date.max
        else None  # the last day there is: open
    )
    return since, before


def evidence_recipient(text: str) -> pyrage.x25519.Recipient:
    """An auditor's age public key (age1...), or EvidenceError."""
    try:
        return pyrage.x25519.Recipient.from_str(text.strip())
    except (pyrage.RecipientError, ValueError) as exc:
        raise EvidenceError("recipient is not an age public key (age1...)") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _header(
    system: AISystem,
    span: StreamRange,
    date_from: date | None,
    date_to: date | None,
    openings: EvidenceOpenings,
) -> dict[str, Any]:
    return {
        "type": "header",
        "version": VERSION,
        "origin": settings.LOG_ORIGIN,
        "system": {"slug": system.slug, "name": system.name, "stream": span.stream},
        "range": {
            "from": date_from.isoformat() if date_from else None,
            "to": date_to.isoformat() if date_to else None,
        },
        "start": {
            "batch": span.start_batch,
            "size": span.start_size,
            "compact_range": [node.hex() for node in span.compact_range],
        },
        "end": {"batch": span.end_batch, "size": span.end_size},
        "openings": {"explanation": openings.explanation, "inputs": openings.inputs},
        "created_at": format_time(timezone.now()),
        "verifier_keys": list(LogKey.objects.values_list("verifier_key", flat=True)),
        "tsa_ca_pem": tsa.tsa_ca_certificate_pem(),
    }


def _decision_review(item: ReviewItem | None) -> dict[str, Any] | None:
    if item is None:
        return None
    return {
        "reason": item.reason,
        "queued_at": format_time(item.created_at),
        "due_at": format_time(item.due_at),
        "closed_at": format_time(item.closed_at) if item.closed_at else None,
        "closed_by": item.closed_by or None,
    }


def _decision_openings(decision: Decision, fields: tuple[str, ...]) -> tuple[dict[str, Any], bool]:
    """(openings, erased) of a decision: the chosen committed fields with their salts."""
    personal = None if decision_erased(decision) else decision_personal_data(decision)
    if personal is None:
        return {}, True
    salts = personal["salts"]
    return {
        name: {"salt_b64": salts[name], "value": personal["fields"][name]}
        for name in fields
        if name in salts
    }, False


def _entry_lines(
    page: list[Entry], first_index: int, batch: int, system_id: int, fields: tuple[str, ...]
) -> Iterator[dict[str, Any]]:
    by_seq = {entry.seq: entry for entry in page}
    # By the page's seq range and system rather than a list of the page's ids, whose query text
    # costs more to build than to run; other systems' rows in that range are left out.
    seqs = (page[0].seq, page[-1].seq)
    decisions = {}
    for decision in Decision.objects.filter(
        system_id=system_id, entry__seq__range=seqs
    ).select_related("subject", "review_item"):
        # Entries from before streams existed are in no stream, so not on the page.
        if (entry := by_seq.get(decision.entry_id)) is not None:
            decision.entry = entry  # already loaded: its id binds the ciphertext
            decisions[decision.entry_id] = decision
    actions = {}
    for action in ReviewAction.objects.filter(
        decision__system_id=system_id, entry__seq__range=seqs, sealed_text__isnull=False
    ).select_related("decision__subject"):
        if (entry := by_seq.get(action.entry_id)) is not None:
            action.entry = entry
            actions[action.entry_id] = action
    for offset, entry in enumerate(page):
        line: dict[str, Any] = {
            "type": "entry",
            "index": first_index + offset,
            "batch": batch,
            "canonical_b64": _b64(bytes(entry.canonical)),
            "openings": {},
        }
        if (decision := decisions.get(entry.seq)) is not None:
            line["openings"], erased = _decision_openings(decision, fields)
            if erased:
                line["erased"] = True
            line["review"] = _decision_review(getattr(decision, "review_item", None))
        elif (action := actions.get(entry.seq)) is not None:
            opened = text_opening(action)
            if opened is not None:
                line["openings"] = {
                    REVIEW_TEXT: {"salt_b64": opened["salt"], "value": opened["text"]}
                }
        yield line


def evidence_lines(
    *,
    system: AISystem,
    date_from: date | None,
    date_to: date | None,
    openings: EvidenceOpenings,
) -> Iterator[dict[str, Any]]:
    """The package's lines, in order (docs/evidence.md)."""
    since, before = evidence_bounds(date_from=date_from, date_to=date_to)
    span = stream_range(
        stream=vault.system_stream(system_id=system.pk), sealed_from=since, sealed_before=before
    )
    yield from evidence_span_lines(
        system=system, span=span, date_from=date_from, date_to=date_to, openings=openings
    )


def evidence_span_lines(
    *,
    system: AISystem,
    span: StreamRange,
    date_from: date | None,
    date_to: date | None,
    openings: EvidenceOpenings,
) -> Iterator[dict[str, Any]]:
    """The package's lines for a span of the system log that starts and ends at batches."""
    yield _header(system, span, date_from, date_to, openings)
    lines, entries, erased = 1, 0, 0
    # The heads are read twice (batch lines, then their leaves) rather than kept: a range may
    # hold many thousands of batches.
    for head in stream_range_heads(span=span):
        batch = head.batch
        yield {
            "type": "batch",
            "number": batch.number,
            "header_b64": _b64(bytes(batch.header)),
            "header_hash": bytes(batch.header_hash).hex(),
            "checkpoint": batch.checkpoint,
            "anchors": batch_anchors(batch=batch),
        }
        lines += 1
    fields = openings.decision_fields()
    for head in stream_range_heads(span=span):
        if head.batch.number == span.start_batch:
            continue  # its leaves are before the range
        index = head.prev_size
        for page in stream_head_leaves(head=head, chunk_size=PAGE):
            for line in _entry_lines(page, index, head.batch.number, system.pk, fields):
                erased += line.get("erased", False)
                lines += 1
                yield line
            index += len(page)
        entries += head.size - head.prev_size
    yield {"type": "end", "entries": entries, "erased": erased, "lines": lines}


class _Collected:
    """A write-only file that keeps what was written until taken: gzip writes into it."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts, self.size = [], 0
        return data


def _gzipped(lines: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    collected = _Collected()
    with gzip.GzipFile(fileobj=collected, mode="wb", mtime=0, compresslevel=6) as compressed:  # type: ignore[arg-type]
        for line in lines:
            compressed.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")
            if collected.size >= CHUNK_BYTES:
                yield collected.take()
    yield collected.take()


def _age_encrypted(chunks: Iterable[bytes], recipient: pyrage.x25519.Recipient) -> Iterator[bytes]:
    """The chunks encrypted to the recipient, as a stream of chunks.

    pyrage encrypts from a reader to a writer in one call, so it runs in a thread reading a
    pipe; the package is still made in this thread (its database connection) and fed to the
    pipe a chunk at a time. The thread never blocks on its output (an unbounded queue that this
    generator empties after every chunk it feeds), so the two cannot deadlock, and what waits
    in the queue is at most a chunk plus the pipe's buffer."""
    read_fd, write_fd = os.pipe()
    results: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()

    class _Output:
        def write(self, data: bytes) -> int:
            results.put(bytes(data))
            return len(data)

        def flush(self) -> None:
            pass

    def encrypt() -> None:
        try:
            with os.fdopen(read_fd, "rb") as reader:
                pyrage.encrypt_io(reader, _Output(), [recipient])
            results.put(None)
        except BaseException as exc:  # handed to the generator, which raises it
            results.put(exc)

    def drained(*, until_done: bool) -> Iterator[bytes]:
        while until_done or not results.empty():
            item = results.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    worker = threading.Thread(target=encrypt, name="evidence-age", daemon=True)
    worker.start()
    try:
        with os.fdopen(write_fd, "wb") as writer:  # closing it ends the encryption
            for chunk in chunks:
                writer.write(chunk)
                writer.flush()
                yield from drained(until_done=False)
        yield from drained(until_done=True)
    finally:
        worker.join()


def evidence_chunks(
    *,
    system: AISystem,
    date_from: date | None,
    date_to: date | None,
    openings: EvidenceOpenings,
    recipient: str | None = None,
) -> Iterator[bytes]:
    """The package as bytes, a chunk at a time: gzip NDJSON, encrypted to `recipient` (an age
    public key) when one is given. The recipient is checked before anything is read."""
    age_recipient = evidence_recipient(recipient) if recipient else None
    chunks = _gzipped(
        evidence_lines(system=system, date_from=date_from, date_to=date_to, openings=openings)
    )
    return _age_encrypted(chunks, age_recipient) if age_recipient else chunks


def evidence_write(
    *,
    system: AISystem,
    date_from: date | None,
    date_to: date | None,
    openings: EvidenceOpenings,
    out: IO[bytes],
    recipient: str | None = None,
) -> None:
    """Writes the package to `out` (docs/evidence.md)."""
    for chunk in evidence_chunks(
        system=system,
        date_from=date_from,
        date_to=date_to,
        openings=openings,
        recipient=recipient,
    ):
        out.write(chunk)
