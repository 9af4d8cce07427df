"""Reads of the log: checkpoints, batches, proofs, receipts."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils.module_loading import import_string
from veridict_verify import merkle
from veridict_verify.formats import format_time
from veridict_verify.note import note_split

from timestamping import tree
from timestamping.anchor_backends import BUILTIN, anchor_receipt_fields, backends_configured
from timestamping.models import (
    Anchor,
    AnchorJob,
    Batch,
    Entry,
    LogKey,
    StreamHead,
    StreamMark,
)
from timestamping.tree import TreeView

RECEIPT_VERSION = "veridict.receipt/v1"
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


class NotInLog(LookupError):
    """The asked-for entry, size or batch is not (yet) in the log."""


def batch_latest() -> Batch | None:
    return Batch.objects.order_by("-number").first()


def batch_get(*, number: int) -> Batch:
    try:
        return Batch.objects.get(number=number)
    except Batch.DoesNotExist as exc:
        raise NotInLog(f"there is no batch {number}") from exc


def batch_of_entry(*, entry: Entry) -> Batch | None:
    """The batch that sealed this entry, or None while it is pending."""
    return Batch.objects.filter(last_seq__gte=entry.seq).order_by("last_seq").first()


def entry_get(*, entry_id: Any) -> Entry:
    try:
        return Entry.objects.get(uuid=entry_id)
    except (Entry.DoesNotExist, ValueError, ValidationError) as exc:
        raise NotInLog(f"there is no entry {entry_id}") from exc


def entries_pending_count(*, after: Batch | None) -> int:
    """Entries not yet sealed, given the latest batch."""
    return Entry.objects.filter(seq__gt=after.last_seq if after else 0).count()


def tree_size_current() -> int:
    return Batch.objects.order_by("-tree_size").values_list("tree_size", flat=True).first() or 0


def _check_size(tree_size: int, *, current: int | None = None) -> None:
    current = tree_size_current() if current is None else current
    if not 0 < tree_size <= current:
        raise NotInLog(f"tree size {tree_size} is not between 1 and the current size {current}")


def _sealed_position(leaf_hash: bytes) -> tuple[int, int] | None:
    """(leaf index, current tree size) of a sealed leaf, in one query.

    Raw SQL because this answers auditors' polling: built by the ORM, its three lookups cost
    more than running them.
    """
    entry = connection.ops.quote_name(Entry._meta.db_table)
    batch = connection.ops.quote_name(Batch._meta.db_table)
    sql = (
        f"SELECT e.seq, b.prev_tree_size, b.first_seq, b.skipped_ranges, "  # noqa: S608
        f"(SELECT max(tree_size) FROM {batch}) FROM {entry} e, {batch} b "
        f"WHERE e.leaf_hash = %s AND b.last_seq = "
        f"(SELECT min(last_seq) FROM {batch} WHERE last_seq >= e.seq)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [leaf_hash])
        row = cursor.fetchone()
    if row is None:
        return None
    seq, prev_tree_size, first_seq, skipped, current = row
    sealed_in = Batch(
        prev_tree_size=prev_tree_size,
        first_seq=first_seq,
        skipped_ranges=json.loads(skipped) if isinstance(skipped, str) else skipped,
    )
    return sealed_in.leaf_index_of(seq), current


def proof_inclusion(*, leaf_hash: bytes, tree_size: int) -> dict[str, Any]:
    """The leaf index of a sealed leaf and its audit path in the tree of the given size."""
    position = _sealed_position(leaf_hash)
    if position is None:
        raise NotInLog("no sealed entry has this leaf hash")
    leaf_index, current = position
    _check_size(tree_size, current=current)
    if leaf_index >= tree_size:
        raise NotInLog(f"leaf {leaf_index} was added after tree size {tree_size}")
    return {
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "hashes": [step.hex() for step in tree.inclusion_proof(leaf_index, tree_size)],
    }


def proof_consistency(*, old_size: int, new_size: int) -> list[bytes]:
    if old_size > new_size:
        raise NotInLog(f"size {old_size} is larger than size {new_size}")
    current = tree_size_current()
    _check_size(new_size, current=current)
    _check_size(old_size, current=current)
    return tree.consistency_proof(old_size, new_size)


def stream_size_current(*, stream: str) -> int:
    head = StreamHead.objects.filter(stream=stream).order_by("-size").first()
    return head.size if head else 0


def stream_leaf_index(*, stream: str, seq: int) -> int:
    """The index in its stream's tree of the stream's entry with this seq, if it is sealed.

    Counted, not stored, as leaf indices are (models.py): the stream's leaves are its sealed
    entries in seq order, so the index is the nearest StreamMark at or below the seq plus the
    stream's entries between the two, fewer than STREAM_MARK_EVERY: two index-backed queries
    whatever the stream's size and however many of its entries one batch sealed."""
    mark = (
        StreamMark.objects.filter(stream=stream, seq__lte=seq)
        .order_by("-seq")
        .values_list("leaf_index", "seq")
        .first()
    )
    # No mark at or below: only a stream's first leaf lacks one, and only until it is sealed.
    base_index, base_seq = mark if mark is not None else (0, 0)
    return base_index + Entry.objects.filter(stream=stream, seq__gte=base_seq, seq__lt=seq).count()


def _stream_sealed_position(stream: str, leaf_hash: bytes) -> tuple[int, int] | None:
    """(leaf index in the stream, the stream's current size) of a sealed leaf of the stream, in
    one query: stream_leaf_index's two lookups and the size, for auditors' polling (as
    _sealed_position for the global log: the ORM's separate queries cost more than running them).
    """
    entry = connection.ops.quote_name(Entry._meta.db_table)
    head = connection.ops.quote_name(StreamHead._meta.db_table)
    mark = connection.ops.quote_name(StreamMark._meta.db_table)
    # The stream is a parameter everywhere, not e.stream: compared with a constant, the count is
    # an index-only scan of the (stream, seq) partial index, which holds only this stream's
    # entries between the mark and the leaf; with e.stream PostgreSQL scans every entry between.
    sql = (
        f"SELECT coalesce(m.leaf_index, 0) + (SELECT count(*) FROM {entry} x "  # noqa: S608
        f"WHERE x.stream = %(stream)s AND x.seq >= coalesce(m.seq, 0) AND x.seq < e.seq), "
        f"(SELECT max(size) FROM {head} WHERE stream = %(stream)s) "
        f"FROM {entry} e LEFT JOIN {mark} m ON m.stream = %(stream)s AND m.seq = "
        f"(SELECT max(seq) FROM {mark} WHERE stream = %(stream)s AND seq <= e.seq) "
        f"WHERE e.leaf_hash = %(leaf_hash)s AND e.stream = %(stream)s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, {"stream": stream, "leaf_hash": leaf_hash})
        row = cursor.fetchone()
    # The stream's sealed entries are its first `current` ones in seq order (the sealer seals in
    # log order), so an index at or past the current size is a leaf still pending.
    if row is None or row[1] is None or row[0] >= row[1]:
        return None
    return int(row[0]), int(row[1])


def stream_position(*, entry: Entry, batch: Batch | None = None) -> tuple[StreamHead, int] | None:
    """(the head its batch wrote for its stream, its leaf index in the stream) of a sealed entry
    of a stream; None for an entry of no stream or not sealed yet."""
    if not entry.stream:
        return None
    batch = batch or batch_of_entry(entry=entry)
    if batch is None:
        return None
    head = StreamHead.objects.get(stream=entry.stream, batch=batch)
    return head, stream_leaf_index(stream=entry.stream, seq=entry.seq)


def proof_stream_inclusion(*, stream: str, leaf_hash: bytes, tree_size: int) -> dict[str, Any]:
    """The leaf index of a sealed leaf in its stream's tree and its audit path in the stream tree
    of the given size."""
    position = _stream_sealed_position(stream, leaf_hash)
    if position is None:
        raise NotInLog(f"no sealed entry of stream {stream} has this leaf hash")
    leaf_index, current = position
    _check_size(tree_size, current=current)
    if leaf_index >= tree_size:
        raise NotInLog(f"leaf {leaf_index} was added to the stream after size {tree_size}")
    return {
        "stream": stream,
        "leaf_index": leaf_index,
        "tree_size": tree_size,
        "hashes": [
            step.hex() for step in tree.inclusion_proof(leaf_index, tree_size, stream=stream)
        ],
    }


def proof_stream_consistency(*, stream: str, old_size: int, new_size: int) -> list[bytes]:
    if old_size > new_size:
        raise NotInLog(f"size {old_size} is larger than size {new_size}")
    current = stream_size_current(stream=stream)
    _check_size(new_size, current=current)
    _check_size(old_size, current=current)
    return tree.consistency_proof(old_size, new_size, stream=stream)


@dataclass(frozen=True)
class StreamRange:
    """A stream's log between two batch boundaries: its size `start_size` after batch
    `start_batch` (the last batch before the range that touched the stream; 0 and size 0 when
    none did) with its compact range there, and its size `end_size` after `end_batch` (the last
    batch of the range that touched it; the start when none did)."""

    stream: str
    start_batch: int
    start_size: int
    compact_range: list[bytes]
    end_batch: int
    end_size: int


def stream_range(
    *, stream: str, sealed_from: datetime | None, sealed_before: datetime | None
) -> StreamRange:
    """The stream's range over the batches sealed in [sealed_from, sealed_before) (None: open).

    Bounded by batches, not by entry times: a batch header is where a stream's size and root are
    signed, so completeness can only be shown from one header to another."""
    heads = StreamHead.objects.filter(stream=stream)
    before_range = (
        heads.none() if sealed_from is None else heads.filter(batch__sealed_at__lt=sealed_from)
    )
    in_range = heads if sealed_from is None else heads.filter(batch__sealed_at__gte=sealed_from)
    if sealed_before is not None:
        in_range = in_range.filter(batch__sealed_at__lt=sealed_before)
    start = before_range.order_by("-batch__number").values_list("batch__number", "size").first()
    start_batch, start_size = start or (0, 0)
    end = in_range.order_by("-batch__number").values_list("batch__number", "size").first()
    end_batch, end_size = end or (start_batch, start_size)
    border = (
        TreeView(stream=stream).compute(
            lambda range_hash: merkle.compact_range(start_size, range_hash)
        )
        if start_size
        else []
    )
    return StreamRange(stream, start_batch, start_size, border, end_batch, end_size)


def stream_range_heads(*, span: StreamRange) -> Iterator[StreamHead]:
    """The stream's heads from the range's start batch (if any) to its end batch, in batch
    order, each with its batch: a few at a time, for a range of thousands of batches."""
    heads = (
        StreamHead.objects.filter(
            stream=span.stream,
            batch__number__gte=span.start_batch,
            batch__number__lte=span.end_batch,
        )
        .select_related("batch")
        .order_by("batch__number")
    )
    return heads.iterator(chunk_size=100)


def stream_head_leaves(*, head: StreamHead, chunk_size: int = 2000) -> Iterator[list[Entry]]:
    """The entries a head added to its stream, in stream order, in lists of chunk_size.

    Keyset pages on the (stream, seq) index rather than one cursor: memory stays bounded on
    SQLite and PostgreSQL alike, and no transaction has to stay open across pages. Checks the
    count against the head, so that a package can never silently miss a leaf."""
    batch = head.batch
    entries = Entry.objects.filter(stream=head.stream, seq__lte=batch.last_seq).only(
        "seq", "uuid", "kind", "canonical", "leaf_hash", "stream"
    )
    after, count = batch.first_seq - 1, 0
    while True:
        page = list(entries.filter(seq__gt=after).order_by("seq")[:chunk_size])
        if not page:
            break
        count += len(page)
        after = page[-1].seq
        yield page
    if count != head.size - head.prev_size:
        raise RuntimeError(
            f"batch {batch.number} added {head.size - head.prev_size} leaves to stream "
            f"{head.stream} but {count} entries were found"
        )


def _signer_key(note: str) -> str | None:
    _, signatures = note_split(note)
    key = LogKey.objects.filter(key_id=signatures[0][1].hex()).first()
    return key.verifier_key if key else None


def anchor_sources() -> list[str]:
    """Every anchor source whose evidence receipts carry, in receipt order: the built-in TSA,
    then the configured outside backends (retired ones too: their anchors stay evidence)."""
    return [BUILTIN, *backends_configured()]


def _anchor_first(batch: Batch, backend: str) -> Anchor | None:
    return (
        # Live anchors only: one a chain reorganisation dropped is no evidence (AnchorReorg).
        Anchor.objects.filter(backend=backend, batch__number__gte=batch.number, reorg__isnull=True)
        .select_related("batch")
        .order_by("batch__number")
        .first()
    )


def batch_anchors(*, batch: Batch) -> list[dict[str, Any]]:
    """Per anchor source, the first anchor at or after this batch, with the consistency proof
    from this batch's checkpoint to the anchored one: the `anchors` of receipts and of evidence
    packages."""
    anchors = []
    for backend in anchor_sources():
        anchor = _anchor_first(batch, backend)
        if anchor is None:
            continue
        consistency = (
            tree.consistency_proof(batch.tree_size, anchor.batch.tree_size)
            if anchor.batch_id != batch.pk
            else []
        )
        anchors.append(
            {
                "type": anchor.type,
                "checkpoint": anchor.batch.checkpoint,
                "consistency": [step.hex() for step in consistency],
                **anchor_receipt_fields(anchor),
            }
        )
    return anchors


def _job_state(job: AnchorJob) -> dict[str, Any]:
    return {
        "status": job.status,
        "batch": job.batch.number,
        "attempts": job.attempts,
        "last_error": job.last_error,
        "next_attempt_at": format_time(job.next_attempt_at) if job.next_attempt_at else None,
    }


def _anchor_status(batch: Batch) -> list[dict[str, Any]]:
    """Informational, per anchor source: where this batch's anchoring stands. Anchors that exist
    are in `anchors`; this also says what is pending or failed, and why."""
    configured = backends_configured()
    states = []
    for backend in anchor_sources():
        state: dict[str, Any] = {
            "backend": backend,
            "type": configured[backend].type if backend in configured else "rfc3161",
        }
        anchor = _anchor_first(batch, backend)
        if anchor is not None:
            job = AnchorJob.objects.filter(backend=backend, batch=anchor.batch_id).first()
            state.update(
                _job_state(job)
                if job
                else {
                    "status": AnchorJob.Status.FINAL,
                    "batch": anchor.batch.number,
                    "attempts": 1,
                    "last_error": "",
                    "next_attempt_at": None,
                }
            )
        elif (
            job := AnchorJob.objects.filter(
                backend=backend,
                batch__number__gte=batch.number,
                status__in=[AnchorJob.Status.PENDING, AnchorJob.Status.FAILED],
            )
            .select_related("batch")
            .order_by("batch__number")
            .first()
        ) is not None:
            state.update(_job_state(job))
        else:
            # Not tried yet: the built-in TSA stamps right after the seal (or the sweep does);
            # an outside backend anchors a later checkpoint when its interval is next due.
            state.update(
                {
                    "status": AnchorJob.Status.PENDING if backend == BUILTIN else "scheduled",
                    "batch": None,
                    "attempts": 0,
                    "last_error": "",
                    "next_attempt_at": None,
                }
            )
        states.append(state)
    return states


def anchor_jobs_of_batch(*, batch: Batch) -> list[AnchorJob]:
    """The anchoring jobs of one batch: outside backends it was due for, built-in stamps that
    failed at least once."""
    return list(batch.anchor_jobs.order_by("backend"))


def receipt_get(*, entry: Entry, request: Any = None) -> dict[str, Any]:
    """The receipt of DESIGN.md: everything needed to verify the entry offline; given the
    request, with the fields settings.RECEIPT_EXTRA adds for that reader."""
    receipt = _receipt(entry)
    hook = settings.RECEIPT_EXTRA
    if request is not None:
        # timestamping does not know the domain: the function settings name decides (like
        # RECEIPT_ACCESS). It may only add fields, never replace one of the receipt's own.
        extra = dict(import_string(hook)(entry, request))
        clashing = sorted(set(extra) & set(receipt))
        if clashing:
            raise ValueError(f"{hook} may not replace the receipt's {', '.join(clashing)}")
        receipt.update(extra)
    return receipt


def _receipt(entry: Entry) -> dict[str, Any]:
    batch = batch_of_entry(entry=entry)
    receipt: dict[str, Any] = {
        "version": RECEIPT_VERSION,
        "entry": {
            "id": str(entry.uuid),
            "kind": entry.kind,
            "received_at": format_time(entry.received_at),
            "leaf_hash": bytes(entry.leaf_hash).hex(),
            "canonical_b64": base64.b64encode(bytes(entry.canonical)).decode(),
        },
        "set": entry.set_note,
        "proof": None,
        "checkpoint": None,
        "batch": None,
        "log": {"origin": settings.LOG_ORIGIN, "verifier_key": _signer_key(entry.set_note)},
        "anchors": [],
        "anchor_status": [],
    }
    if entry.stream:
        receipt["stream"] = None  # pending, like proof
    if batch is None:
        return receipt
    leaf_index = batch.leaf_index_of(entry.seq)
    receipt["proof"] = {
        "leaf_index": leaf_index,
        "tree_size": batch.tree_size,
        "inclusion": [step.hex() for step in tree.inclusion_proof(leaf_index, batch.tree_size)],
    }
    receipt["checkpoint"] = batch.checkpoint
    receipt["batch"] = {
        "number": batch.number,
        "header_b64": base64.b64encode(bytes(batch.header)).decode(),
        "header_hash": bytes(batch.header_hash).hex(),
    }
    position = stream_position(entry=entry, batch=batch)
    if position is not None:
        head, stream_index = position
        receipt["stream"] = {
            "id": entry.stream,
            "leaf_index": stream_index,
            "tree_size": head.size,
            "inclusion": [
                step.hex()
                for step in tree.inclusion_proof(stream_index, head.size, stream=entry.stream)
            ],
        }
    receipt["log"]["verifier_key"] = _signer_key(batch.checkpoint)
    receipt["anchors"] = batch_anchors(batch=batch)
    receipt["anchor_status"] = _anchor_status(batch)
    return receipt


def receipt_tlog_proof(*, entry: Entry) -> str:
    """The receipt as C2SP tlog-proof: the leaf's canonical bytes as `extra`, the index, the
    audit path and the checkpoint."""
    receipt = receipt_get(entry=entry)
    if receipt["proof"] is None:
        raise NotInLog("the entry is not sealed yet: no proof to export")
    lines = [
        TLOG_PROOF_HEADER,
        f"extra {receipt['entry']['canonical_b64']}",
        f"index {receipt['proof']['leaf_index']}",
    ]
    lines += [
        base64.b64encode(bytes.fromhex(step)).decode() for step in receipt["proof"]["inclusion"]
    ]
    return "\n".join(lines) + "\n\n" + receipt["checkpoint"]
