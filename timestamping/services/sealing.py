"""Sealing: pending entries become the next batch of leaves, with a signed checkpoint."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

import structlog
from django.conf import settings
from django.db import connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from veridict_verify.formats import ZERO_HASH_HEX, Checkpoint, format_time

from timestamping import canonical, keys, tree
from timestamping.models import (
    STREAM_MARK_EVERY,
    Batch,
    Entry,
    SealLock,
    StreamHead,
    StreamMark,
    Tile,
)
from timestamping.seq_ranges import seq_ranges_of_gaps
from timestamping.services.anchoring import batch_anchor_builtin
from timestamping.services.entries import SEQ_LOCK

log = structlog.get_logger(__name__)


def _committed_seq_watermark() -> int | None:
    """A seq below which every entry that will ever exist is already committed (PostgreSQL).

    Appenders hold SEQ_LOCK shared from before they draw a seq until they end, so once the
    sealer holds it exclusively every seq drawn so far belongs to a finished transaction, and
    every later one will be larger. It is held only for this one query; appenders that arrive
    meanwhile wait that long. On SQLite the seal's IMMEDIATE transaction already excludes every
    writer: None.
    """
    if connection.vendor != "postgresql":
        return None
    table = connection.ops.quote_name(Entry._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SEQ_LOCK])
        cursor.execute(f"SELECT max(seq) FROM {table}")  # noqa: S608
        (watermark,) = cursor.fetchone()
    return watermark or 0


def _pending_leaves(
    after_seq: int, watermark: int | None, limit: int
) -> list[tuple[int, bytes, str]]:
    table = connection.ops.quote_name(Entry._meta.db_table)
    bound = "" if watermark is None else "AND seq <= %s"
    params = [after_seq] + ([] if watermark is None else [watermark]) + [limit]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT seq, leaf_hash, stream FROM {table} WHERE seq > %s {bound} "  # noqa: S608
            "ORDER BY seq LIMIT %s",
            params,
        )
        return [(seq, bytes(leaf_hash), stream) for seq, leaf_hash, stream in cursor.fetchall()]


@dataclass(frozen=True)
class StreamUpdate:
    """What a batch did to one stream's tree: the header v2 lists one per stream it touched."""

    stream: str
    prev_size: int
    size: int
    root: bytes

    def header_item(self) -> dict[str, object]:
        return {
            "id": self.stream,
            "prev_size": self.prev_size,
            "size": self.size,
            "root": self.root.hex(),
        }


def _tiles_insert(tiles: list[tuple[str, tree.NewTile]]) -> None:
    """Stores new tiles (stream, tile). On PostgreSQL by binary COPY: Django binds parameters on
    the client, so an INSERT carries every 8 KB tile as hex text for the server to parse, about
    four times the time of the COPY; a seal of 100,000 leaves writes 3 MB of tiles per tree."""
    if connection.vendor != "postgresql":
        Tile.objects.bulk_create(
            Tile(stream=stream, level=t.level, index=t.index, width=t.width, hashes=t.hashes)
            for stream, t in tiles
        )
        return
    table = connection.ops.quote_name(Tile._meta.db_table)
    columns = "stream, level, index, width, hashes"
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["varchar", "int2", "int8", "int2", "bytea"])
        for stream, t in tiles:
            copy.write_row((stream, t.level, t.index, t.width, t.hashes))


def stream_sizes(streams: list[str]) -> dict[str, int]:
    """Each stream's current size (its latest head's); a stream with no head is absent."""
    latest = StreamHead.objects.filter(stream=OuterRef("stream")).order_by("-size").values("size")
    return dict(
        StreamHead.objects.filter(stream__in=streams, size=Subquery(latest[:1])).values_list(
            "stream", "size"
        )
    )


def _streams_extend(leaves: list[tuple[int, bytes, str]]) -> list[StreamUpdate]:
    """Appends each stream's leaves of the batch, in log order, to that stream's tree: the same
    tile code as the global tree, each stream's tiles apart."""
    added: dict[str, list[bytes]] = {}
    seqs: dict[str, list[int]] = {}
    for seq, leaf_hash, stream in leaves:
        if stream:
            added.setdefault(stream, []).append(leaf_hash)
            seqs.setdefault(stream, []).append(seq)
    if not added:
        return []
    sizes = stream_sizes(sorted(added))
    updates, rows, marks = [], [], []
    for stream in sorted(added):
        old_size = sizes.get(stream, 0)
        # The first multiple of STREAM_MARK_EVERY at or after old_size, then every one after it.
        first_mark = -old_size % STREAM_MARK_EVERY
        marks += [
            StreamMark(stream=stream, leaf_index=old_size + offset, seq=seqs[stream][offset])
            for offset in range(first_mark, len(seqs[stream]), STREAM_MARK_EVERY)
        ]
        new_tiles = tree.tree_extend(old_size, added[stream], stream=stream)
        rows += [(stream, t) for t in new_tiles]
        view = tree.TreeView(
            overlay={(t.level, t.index): t.hashes for t in new_tiles}, stream=stream
        )
        size = old_size + len(added[stream])
        updates.append(StreamUpdate(stream, old_size, size, tree.tree_root(size, view)))
    _tiles_insert(rows)
    StreamMark.objects.bulk_create(marks)
    return updates


def batch_seal(*, max_entries: int | None = None) -> Batch | None:
    """Seals the pending entries (at most max_entries) into the next batch; None if none wait.

    One transaction assigns leaf indices, stores the new tiles, the chained batch header and the
    signed checkpoint; right after it commits, the built-in TSA stamps the checkpoint.
    """
    started = time.monotonic()
    limit = max_entries or settings.SEAL_MAX_ENTRIES
    watermark = _committed_seq_watermark()
    with transaction.atomic(durable=True):
        # The seal lock row is what makes sealers take turns on PostgreSQL; the unique constraints
        # on Batch would turn a second sealer's fork into an error even without it.
        SealLock.objects.select_for_update().get_or_create(pk=1)
        previous = Batch.objects.order_by("-number").first()
        after_seq = previous.last_seq if previous else 0
        leaves = _pending_leaves(after_seq, watermark, limit)
        if not leaves:
            return None
        old_size = previous.tree_size if previous else 0
        new_size = old_size + len(leaves)
        skipped = seq_ranges_of_gaps(after_seq=after_seq, present=(seq for seq, _, _ in leaves))

        new_tiles = tree.tree_extend(old_size, [leaf_hash for _, leaf_hash, _ in leaves])
        _tiles_insert([("", t) for t in new_tiles])
        view = tree.TreeView(overlay={(t.level, t.index): t.hashes for t in new_tiles})
        root = tree.tree_root(new_size, view)
        consistency = tree.consistency_proof(old_size, new_size, view) if old_size else []
        streams = _streams_extend(leaves)

        number = previous.number + 1 if previous else 1
        sealed_at = timezone.now()
        fields = {
            # Version 2 only when the batch touched a stream: a log without streams writes
            # the headers it always did.
            "v": 2 if streams else 1,
            "origin": settings.LOG_ORIGIN,
            "number": number,
            "prev_header_hash": bytes(previous.header_hash).hex() if previous else ZERO_HASH_HEX,
            "prev_tree_size": old_size,
            "prev_root": bytes(previous.root).hex() if previous else tree.tree_root(0).hex(),
            "tree_size": new_size,
            "root": root.hex(),
            "consistency": [step.hex() for step in consistency],
            "sealed_at": format_time(sealed_at),
        }
        if streams:
            fields["streams"] = [update.header_item() for update in streams]
        header = canonical.dumps(fields)
        header_hash = hashlib.sha256(header).digest()
        checkpoint = Checkpoint(
            origin=settings.LOG_ORIGIN,
            tree_size=new_size,
            root=root,
            batch_number=number,
            header_hash=header_hash,
        )
        batch = Batch.objects.create(
            number=number,
            prev_header_hash=previous.header_hash if previous else bytes(32),
            header=header,
            header_hash=header_hash,
            prev_tree_size=old_size,
            tree_size=new_size,
            root=root,
            first_seq=after_seq + 1,
            last_seq=leaves[-1][0],
            skipped_ranges=skipped,
            checkpoint=keys.sign(checkpoint.body()),
            sealed_at=sealed_at,
        )
        StreamHead.objects.bulk_create(
            StreamHead(
                stream=update.stream,
                batch=batch,
                prev_size=update.prev_size,
                size=update.size,
                root=update.root,
            )
            for update in streams
        )
        # robust: a TSA failure must not turn a committed seal into an error; a later run re-stamps.
        transaction.on_commit(lambda: batch_anchor_builtin(batch_id=batch.pk), robust=True)
    log.info(
        "batch_sealed",
        batch=number,
        entries=len(leaves),
        streams=len(streams),
        tree_size=new_size,
        skipped=sum(last - first + 1 for first, last in skipped),
        seconds=round(time.monotonic() - started, 4),
    )
    return batch
