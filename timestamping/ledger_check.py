"""Recomputes every leaf, node, root, chain link and signature; names the first mismatch."""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import rfc8785
from django.conf import settings
from django.db import connection, transaction
from veridict_verify import merkle
from veridict_verify.formats import (
    ZERO_HASH_HEX,
    Checkpoint,
    FormatError,
    SignedEntryTimestamp,
    format_time,
)
from veridict_verify.note import NoteError, VerifierKey, note_open, note_split
from veridict_verify.timestamp import TimestampError, timestamp_verify

from timestamping import tree
from timestamping.anchor_backends import BUILTIN, backends_configured
from timestamping.models import (
    STREAM_MARK_EVERY,
    Anchor,
    Batch,
    Entry,
    LogKey,
    StreamHead,
    StreamMark,
    Tile,
)
from timestamping.seq_ranges import SkippedSeqs, seq_ranges_well_formed
from timestamping.tree import HASH, TILE_HEIGHT, TILE_WIDTH

# Rows fetched per round trip; entries are streamed, never all loaded.
ENTRY_CHUNK = 2000
TILE_CHUNK = 200
BATCH_CHUNK = 200

Progress = Callable[[int], object]


@dataclass(frozen=True)
class Mismatch:
    """The first stored thing that does not match what is recomputed, and where it is."""

    what: str
    detail: str
    entry: str | None = None
    leaf_index: int | None = None
    seq: int | None = None
    batch: int | None = None
    tile: str | None = None
    anchor: int | None = None

    def location(self) -> str:
        parts = [
            f"entry {self.entry}" if self.entry else "",
            f"leaf index {self.leaf_index}" if self.leaf_index is not None else "",
            f"seq {self.seq}" if self.seq is not None else "",
            f"batch {self.batch}" if self.batch is not None else "",
            f"tile {self.tile}" if self.tile else "",
            f"anchor {self.anchor}" if self.anchor is not None else "",
        ]
        return ", ".join(part for part in parts if part) or "the log"

    def message(self) -> str:
        return f"MISMATCH: {self.what} at {self.location()}: {self.detail}"


@dataclass
class LedgerReport:
    entries: int = 0
    batches: int = 0
    tree_size: int = 0
    pending: int = 0
    tiles: int = 0
    anchors: int = 0
    # Anchors whose time-stamp could not be checked: of a backend no longer configured (whose
    # roots are unknown here), or of a type this check does not verify (ethereum).
    anchors_unchecked: int = 0
    # Tiles wider than the verified tree, written by a batch sealed while the check ran.
    tiles_after_head: int = 0
    seconds: float = 0.0
    mismatch: Mismatch | None = None

    @property
    def ok(self) -> bool:
        return self.mismatch is None

    def summary(self) -> str:
        if self.mismatch is not None:
            return self.mismatch.message()
        return (
            f"ledger verified: {self.entries} entries, {self.batches} batches, "
            f"tree size {self.tree_size}, {self.pending} pending"
        )

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["verdict"] = "verified" if self.ok else "mismatch"
        if self.mismatch is not None:
            result["mismatch"]["location"] = self.mismatch.location()
        return result


class RootStack:
    """The perfect subtrees of the leaves pushed so far, largest first: the RFC 9162 root of every
    prefix of the log from O(log n) hashes, so a million leaves are never held at once."""

    def __init__(self, subtrees: list[tuple[int, bytes]] | None = None) -> None:
        self._subtrees: list[tuple[int, bytes]] = list(subtrees or [])

    def push(self, leaf_hash: bytes) -> None:
        height, node = 0, leaf_hash
        while self._subtrees and self._subtrees[-1][0] == height:
            _, left = self._subtrees.pop()
            node, height = merkle.node_hash(left, node), height + 1
        self._subtrees.append((height, node))

    def root(self) -> bytes:
        if not self._subtrees:
            return merkle.EMPTY_ROOT
        return merkle.fold_right([node for _, node in self._subtrees])

    def copy(self) -> RootStack:
        return RootStack(self._subtrees)


class _Found(Exception):
    def __init__(self, mismatch: Mismatch) -> None:
        super().__init__(mismatch.message())
        self.mismatch = mismatch


def _fail(what: str, detail: str, **where: Any) -> _Found:
    return _Found(Mismatch(what=what, detail=detail, **where))


class _Peekable:
    _END = object()

    def __init__(self, rows: Iterator[Any]) -> None:
        self._rows = rows
        self._next: Any = self._END

    def peek(self) -> Any:
        if self._next is self._END:
            self._next = next(self._rows, None)
        return self._next

    def pop(self) -> Any:
        row = self.peek()
        self._next = self._END
        return row


def _tile_name(level: int, index: int, width: int | None = None) -> str:
    return f"{level}/{index}" + (f" width {width}" if width is not None else "")


class _TileLevel:
    """One tree level as tiles: the hashes recomputed for the tile being filled, and every stored
    version (width) of that tile, streamed in (index, width) order."""

    def __init__(self, level: int) -> None:
        self.level = level
        self.rows = _Peekable(
            Tile.objects.filter(stream="", level=level)
            .order_by("index", "width")
            .values_list("index", "width", "hashes")
            .iterator(chunk_size=TILE_CHUNK)
        )
        self.index = 0
        self.hashes: list[bytes] = []
        self.versions: list[tuple[int, bytes]] | None = None  # (width, hashes), narrowest first
        self.beyond: list[tuple[int, int]] = []  # (index, width) of versions wider than the tree

    def _load(self) -> list[tuple[int, bytes]]:
        versions = []
        while (row := self.rows.peek()) is not None and row[0] <= self.index:
            index, width, hashes = self.rows.pop()
            hashes = bytes(hashes)
            if index < self.index:  # tiles are read in index order from 0: this one has no place
                raise _fail(
                    "tile",
                    f"stored tile {_tile_name(self.level, index, width)} lies outside the tree",
                    tile=_tile_name(self.level, index, width),
                )
            if not 0 < width <= TILE_WIDTH or len(hashes) != width * HASH:
                raise _fail(
                    "tile",
                    f"stored tile holds {len(hashes)} bytes, not {width} hashes of {HASH} bytes",
                    tile=_tile_name(self.level, index, width),
                )
            versions.append((width, hashes))
        return versions

    def stored_hash(self, position: int) -> bytes | None:
        """The hash at this position of the widest stored version of the current tile."""
        versions = self.loaded_versions()
        if not versions or versions[-1][0] <= position:
            return None
        return versions[-1][1][position * HASH : (position + 1) * HASH]

    def loaded_versions(self) -> list[tuple[int, bytes]]:
        if self.versions is None:
            self.versions = self._load()
        return self.versions

    def close(self) -> Iterator[tuple[int, int]]:
        """Checks every stored version of the current tile against the recomputed hashes and moves
        to the next tile; yields (width, first differing position) of each version that differs."""
        recomputed = b"".join(self.hashes)
        for width, hashes in self.loaded_versions():
            if width > len(self.hashes):
                self.beyond.append((self.index, width))
            elif hashes != recomputed[: width * HASH]:
                yield (
                    width,
                    next(
                        p
                        for p in range(width)
                        if hashes[p * HASH : (p + 1) * HASH] != self.hashes[p]
                    ),
                )
        self.index, self.hashes, self.versions = self.index + 1, [], None

    def remaining(self) -> Iterator[tuple[int, int]]:
        while (row := self.rows.pop()) is not None:
            yield row[0], row[1]


def _published_keys() -> list[VerifierKey]:
    keys = []
    for pk, key_id, text in LogKey.objects.order_by("pk").values_list(
        "pk", "key_id", "verifier_key"
    ):
        try:
            key = VerifierKey.parse(text)
        except NoteError as exc:
            raise _fail("log_key", f"published key row {pk} does not parse: {exc}") from exc
        if key.key_id.hex() != key_id:
            raise _fail(
                "log_key", f"published key row {pk} has key_id {key_id}, its key {key.key_id.hex()}"
            )
        keys.append(key)
    return keys


@contextlib.contextmanager
def _snapshot() -> Iterator[None]:
    """On PostgreSQL, one read-only REPEATABLE READ snapshot, so every row read belongs to the same
    state of the log. SQLite is not wrapped: its transactions here are IMMEDIATE and would stop
    ingestion for the whole run; rows committed meanwhile are told apart by the head read first."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
    else:
        yield


class _LedgerCheck:
    def __init__(
        self, keys: list[VerifierKey], tsa_ca_pem: bytes | None, progress: Progress | None
    ):
        self.keys = keys
        self.tsa_ca_pem = tsa_ca_pem
        self.remote_roots: dict[str, bytes | None] = {}
        self.progress = progress
        self.origin: str = settings.LOG_ORIGIN
        self.report = LedgerReport()
        self.stack = RootStack()
        self.levels: list[_TileLevel] = []
        self.unreported = 0
        # The end of the previous batch, which the next one must continue.
        self.prev_number = 0
        self.prev_header_hash = bytes(32)
        self.prev_root = merkle.EMPTY_ROOT
        self.prev_last_seq = 0
        # Each stream's tree as a compact range, and the streams the current batch touched with
        # their sizes before it.
        self.streams: dict[str, tuple[int, RootStack]] = {}
        self.batch_streams: dict[str, int] = {}
        # The stream marks the current batch's leaves call for: (stream, leaf index, seq).
        self.batch_marks: list[tuple[str, int, int]] = []

    # --- the walk ---------------------------------------------------------------------------

    def run(self) -> None:
        # Everything is judged against the head read first: batches sealed while the check runs
        # are left to the next run, and their entries count as pending.
        head = Batch.objects.order_by("-number").values_list("number", flat=True).first() or 0
        entries = _Peekable(
            Entry.objects.order_by("seq")
            .values_list(
                "seq", "uuid", "kind", "received_at", "canonical", "leaf_hash", "set_note", "stream"
            )
            .iterator(chunk_size=ENTRY_CHUNK)
        )
        anchors = _Peekable(
            Anchor.objects.filter(batch__number__lte=head)
            .order_by("batch__number", "pk")
            .values_list("batch__number", "pk", "type", "backend", "tsr")
            .iterator(chunk_size=BATCH_CHUNK)
        )
        for batch in (
            Batch.objects.filter(number__lte=head)
            .order_by("number")
            .iterator(chunk_size=BATCH_CHUNK)
        ):
            skipped = self._batch_open(batch)
            self._batch_entries(batch, skipped, entries)
            self._batch_close(batch, anchors)
        while (row := entries.pop()) is not None:
            self._entry(row, leaf_index=None, batch=None, tree_hash=None)
            self.report.pending += 1
            self._count_entry()
        self._tiles_finish(head)
        if self.progress is not None and self.unreported:
            self.progress(self.unreported)

    def _count_entry(self) -> None:
        self.report.entries += 1
        self.unreported += 1
        if self.progress is not None and self.unreported >= ENTRY_CHUNK:
            self.progress(self.unreported)
            self.unreported = 0

    # --- batches ----------------------------------------------------------------------------

    def _batch_open(self, batch: Batch) -> SkippedSeqs:
        where = {"batch": batch.number}
        if batch.number != self.prev_number + 1:
            raise _fail(
                "batch_number", f"batch {batch.number} follows batch {self.prev_number}", **where
            )
        if bytes(batch.prev_header_hash) != self.prev_header_hash:
            raise _fail(
                "chain_link",
                f"prev_header_hash {bytes(batch.prev_header_hash).hex()} is not the header hash "
                f"{self.prev_header_hash.hex()} of batch {self.prev_number}",
                **where,
            )
        if batch.prev_tree_size != self.report.tree_size:
            raise _fail(
                "chain_link",
                f"prev_tree_size {batch.prev_tree_size} is not the tree size "
                f"{self.report.tree_size} of batch {self.prev_number}",
                **where,
            )
        if batch.first_seq != self.prev_last_seq + 1:
            raise _fail(
                "chain_link",
                f"first_seq {batch.first_seq} does not follow last_seq {self.prev_last_seq} "
                f"of batch {self.prev_number}",
                **where,
            )
        if not seq_ranges_well_formed(
            batch.skipped_ranges, first_seq=batch.first_seq, last_seq=batch.last_seq
        ):
            raise _fail(
                "skipped_seqs",
                "skipped_ranges are not ascending, merged [first, last] seq ranges before "
                "last_seq in this batch",
                **where,
            )
        skipped = batch.skipped
        covered = batch.last_seq - batch.first_seq + 1 - skipped.total
        if covered != batch.tree_size - batch.prev_tree_size:
            raise _fail(
                "skipped_seqs",
                f"seqs {batch.first_seq}..{batch.last_seq} minus {skipped.total} skipped are "
                f"{covered} leaves, but the tree grows by {batch.tree_size - batch.prev_tree_size}",
                **where,
            )
        return skipped

    def _batch_entries(self, batch: Batch, skipped: SkippedSeqs, entries: _Peekable) -> None:
        leaf_index = batch.prev_tree_size
        for seq in skipped.covered(batch.last_seq):
            row = entries.peek()
            if row is not None and row[0] < seq:
                # Every seq before this one was consumed or skipped: this row sits at a skipped seq.
                raise _fail(
                    "entry_in_skipped_seq",
                    "the batch lists this seq as skipped, but an entry holds it",
                    entry=str(row[1]),
                    seq=row[0],
                    batch=batch.number,
                )
            if row is None or row[0] > seq:
                stored = self._level(0).stored_hash(leaf_index % TILE_WIDTH)
                raise _fail(
                    "entry_missing",
                    "no entry holds this seq and the batch does not list it as skipped"
                    + (f"; the tree holds leaf hash {stored.hex()} here" if stored else ""),
                    leaf_index=leaf_index,
                    seq=seq,
                    batch=batch.number,
                )
            entries.pop()
            tree_hash = self._level(0).stored_hash(leaf_index % TILE_WIDTH)
            self._entry(row, leaf_index=leaf_index, batch=batch, tree_hash=tree_hash)
            self._leaf_push(row, leaf_index, batch, tree_hash)
            self._count_entry()
            leaf_index += 1
        row = entries.peek()
        if row is not None and row[0] <= batch.last_seq:
            raise _fail(
                "entry_in_skipped_seq",
                "the batch lists this seq as skipped, but an entry holds it",
                entry=str(row[1]),
                seq=row[0],
                batch=batch.number,
            )

    def _batch_close(self, batch: Batch, anchors: _Peekable) -> None:
        where = {"batch": batch.number}
        root = self.stack.root()
        if bytes(batch.root) != root:
            raise _fail(
                "batch_root",
                f"stored root {bytes(batch.root).hex()} is not {root.hex()}, the root recomputed "
                f"from the {batch.tree_size} leaves",
                **where,
            )
        header = bytes(batch.header)
        streams = self._streams_close(batch)
        self._header_check(batch, header, root, streams)
        header_hash = hashlib.sha256(header).digest()
        if bytes(batch.header_hash) != header_hash:
            raise _fail(
                "header_hash",
                f"stored header_hash {bytes(batch.header_hash).hex()} is not SHA-256 of the header "
                f"({header_hash.hex()})",
                **where,
            )
        checkpoint_text = self._checkpoint_check(batch, root, header_hash)
        while (anchor := anchors.peek()) is not None and anchor[0] == batch.number:
            anchors.pop()
            self._anchor_check(batch.number, anchor, checkpoint_text)

        self.report.batches += 1
        self.report.tree_size = batch.tree_size
        self.prev_number, self.prev_header_hash = batch.number, header_hash
        self.prev_root, self.prev_last_seq = root, batch.last_seq

    def _streams_close(self, batch: Batch) -> list[dict[str, Any]]:
        """The batch's stream heads, recomputed from its entries: checked against the stored
        heads and the stored stream tiles; the header check compares them with the header."""
        where = {"batch": batch.number}
        recomputed: list[dict[str, Any]] = []
        for stream in sorted(self.batch_streams):
            size, stack = self.streams[stream]
            recomputed.append(
                {
                    "id": stream,
                    "prev_size": self.batch_streams[stream],
                    "size": size,
                    "root": stack.root().hex(),
                }
            )
        self.batch_streams = {}
        stored = [
            {"id": head[0], "prev_size": head[1], "size": head[2], "root": bytes(head[3]).hex()}
            for head in StreamHead.objects.filter(batch=batch)
            .order_by("stream")
            .values_list("stream", "prev_size", "size", "root")
        ]
        for item in recomputed:
            match = next((head for head in stored if head["id"] == item["id"]), None)
            if match != item:
                raise _fail(
                    "stream_head",
                    f"stream {item['id']}: stored head {match} is not {item}, recomputed from "
                    "the stream's entries",
                    **where,
                )
            try:
                tiles_root = tree.tree_root(item["size"], stream=item["id"])
            except LookupError as exc:
                raise _fail("stream_tile", f"stream {item['id']}: {exc}", **where) from exc
            if tiles_root.hex() != item["root"]:
                raise _fail(
                    "stream_tile",
                    f"stream {item['id']}: the stored tiles give root {tiles_root.hex()} at size "
                    f"{item['size']}, not {item['root']}",
                    **where,
                )
        if len(stored) != len(recomputed):
            extra = sorted({head["id"] for head in stored} - {i["id"] for i in recomputed})
            raise _fail(
                "stream_head", f"stored heads of streams {extra} this batch did not touch", **where
            )
        # The marks proofs by leaf hash count from (selectors.stream_leaf_index): a wrong one
        # would give wrong leaf indices, so proofs that fail for everyone.
        expected_marks, self.batch_marks = sorted(self.batch_marks), []
        stored_marks = sorted(
            StreamMark.objects.filter(
                seq__gte=batch.first_seq, seq__lte=batch.last_seq
            ).values_list("stream", "leaf_index", "seq")
        )
        if stored_marks != expected_marks:
            wrong = sorted(set(stored_marks) ^ set(expected_marks))[:3]
            raise _fail(
                "stream_mark",
                f"stored stream marks differ from the stream's entries (stream, leaf index, seq): "
                f"{wrong}",
                **where,
            )
        return recomputed

    def _header_check(
        self, batch: Batch, header: bytes, root: bytes, streams: list[dict[str, Any]]
    ) -> None:
        where = {"batch": batch.number}
        try:
            fields = json.loads(header)
        except ValueError as exc:
            raise _fail("batch_header", f"the header is not JSON: {exc}", **where) from exc
        if not isinstance(fields, dict):
            raise _fail("batch_header", "the header is not a JSON object", **where)
        try:
            # The reference encoder, not timestamping.canonical: the check must not share the
            # code that wrote the header.
            canonical = rfc8785.dumps(fields) == header
        except (rfc8785.CanonicalizationError, TypeError, ValueError):
            canonical = False
        if not canonical:
            raise _fail("batch_header", "the header bytes are not RFC 8785 canonical JSON", **where)
        expected: dict[str, Any] = {
            "v": 2 if streams else 1,
            "origin": self.origin,
            "number": batch.number,
            "prev_header_hash": self.prev_header_hash.hex() if batch.number > 1 else ZERO_HASH_HEX,
            "prev_tree_size": batch.prev_tree_size,
            "prev_root": self.prev_root.hex(),
            "tree_size": batch.tree_size,
            "root": root.hex(),
            "sealed_at": format_time(batch.sealed_at),
        }
        if streams:
            expected["streams"] = streams
        for name, value in expected.items():
            if fields.get(name) != value:
                raise _fail(
                    "batch_header", f"header {name} is {fields.get(name)!r}, not {value!r}", **where
                )
        extra = set(fields) - set(expected) - {"consistency"}
        if extra:
            raise _fail("batch_header", f"the header has unknown fields {sorted(extra)}", **where)
        proof_hex = fields.get("consistency")
        try:
            proof = [bytes.fromhex(step) for step in proof_hex]  # type: ignore[union-attr]
        except (TypeError, ValueError) as exc:
            raise _fail(
                "batch_header", "header consistency is not a list of hex hashes", **where
            ) from exc
        if batch.prev_tree_size == 0:
            if proof:
                raise _fail(
                    "batch_header", "the first batch's header carries a consistency proof", **where
                )
            return
        try:
            merkle.verify_consistency(
                batch.prev_tree_size, batch.tree_size, self.prev_root, root, proof
            )
        except merkle.ProofError as exc:
            raise _fail("batch_header", f"header consistency proof: {exc}", **where) from exc

    def _checkpoint_check(self, batch: Batch, root: bytes, header_hash: bytes) -> str:
        where = {"batch": batch.number}
        try:
            text, _ = note_split(batch.checkpoint)
        except NoteError as exc:
            raise _fail("checkpoint", str(exc), **where) from exc
        expected = Checkpoint(
            origin=self.origin,
            tree_size=batch.tree_size,
            root=root,
            batch_number=batch.number,
            header_hash=header_hash,
        ).body()
        if text != expected:
            raise _fail("checkpoint", f"the checkpoint text {text!r} is not {expected!r}", **where)
        try:
            note_open(batch.checkpoint, self.keys)
        except NoteError as exc:
            raise _fail("checkpoint_signature", str(exc), **where) from exc
        return text

    def _anchor_check(self, number: int, anchor: tuple[Any, ...], checkpoint_text: str) -> None:
        _, pk, anchor_type, backend, tsr = anchor
        if anchor_type != "rfc3161":
            self.report.anchors_unchecked += 1
            return
        if backend == BUILTIN:
            ca_pem, source = self.tsa_ca_pem, "built-in TSA"
        else:
            ca_pem, source = self._remote_roots(backend), f"TSA of backend {backend!r}"
        if ca_pem is None:
            self.report.anchors_unchecked += 1
            return
        try:
            timestamp_verify(bytes(tsr), message=checkpoint_text.encode(), ca_pem=ca_pem)
        except TimestampError as exc:
            raise _fail("anchor", f"{source} time-stamp: {exc}", batch=number, anchor=pk) from exc
        self.report.anchors += 1

    def _remote_roots(self, backend: str) -> bytes | None:
        """The roots configured for a remote TSA backend; None if it is no longer configured (its
        anchors are then counted as unchecked) or its roots cannot be read."""
        if backend not in self.remote_roots:
            configured = backends_configured().get(backend)
            roots = getattr(configured, "roots", None)
            try:
                self.remote_roots[backend] = (
                    b"".join(path.read_bytes() for path in roots) if roots else None
                )
            except OSError:
                self.remote_roots[backend] = None
        return self.remote_roots[backend]

    # --- entries ----------------------------------------------------------------------------

    def _entry(
        self,
        row: tuple[Any, ...],
        *,
        leaf_index: int | None,
        batch: Batch | None,
        tree_hash: bytes | None,
    ) -> None:
        seq, entry_id, kind, received_at, canonical, leaf_hash, set_note, stream = row
        canonical, leaf_hash = bytes(canonical), bytes(leaf_hash)
        where = {
            "entry": str(entry_id),
            "leaf_index": leaf_index,
            "seq": seq,
            "batch": batch.number if batch else None,
        }
        if merkle.leaf_hash(canonical) != leaf_hash:
            # Which column changed: the leaf hash that the tree (or, while pending, the SET) holds
            # is the one that was hashed at ingestion.
            held = tree_hash if batch is not None else _set_leaf_hash(set_note)
            if held == leaf_hash:
                raise _fail(
                    "canonical",
                    "the canonical bytes do not hash to the leaf hash "
                    + ("the tree holds" if batch is not None else "the SET promises"),
                    **where,
                )
            raise _fail(
                "leaf_hash",
                f"stored leaf hash {leaf_hash.hex()} is not SHA-256(0x00 || canonical bytes) "
                + ("nor the tree's leaf" if batch is not None else "nor the SET's leaf"),
                **where,
            )
        received_text = format_time(received_at)
        try:
            leaf = json.loads(canonical)
        except ValueError as exc:
            raise _fail("canonical", f"the canonical bytes are not JSON: {exc}", **where) from exc
        if not isinstance(leaf, dict) or leaf.get("v") != 1:
            raise _fail("canonical", "the canonical bytes are not a version 1 leaf", **where)
        for name, value in (("id", str(entry_id)), ("kind", kind), ("received_at", received_text)):
            if leaf.get(name) != value:
                raise _fail(
                    "entry_fields",
                    f"the row's {name} {value!r} is not the leaf's {leaf.get(name)!r}",
                    **where,
                )
        # The sealer puts an entry in the stream its row names; the leaf is what binds it.
        if leaf.get("stream", "") != stream or "stream" in leaf and not stream:
            raise _fail(
                "entry_fields",
                f"the row's stream {stream!r} is not the leaf's {leaf.get('stream')!r}",
                **where,
            )
        try:
            text, _ = note_open(set_note, self.keys)
        except NoteError as exc:
            raise _fail("set", str(exc), **where) from exc
        # Fast path: the SET text as this entry's would read (parsing its time costs more than
        # the rest of the check); only a text that differs is parsed to say how.
        lines = text.split("\n")
        mmd = lines[4] if len(lines) == 6 and lines[4].isdigit() else "0"
        expected = SignedEntryTimestamp(
            origin=self.origin, leaf_hash=leaf_hash, received_at=received_text, mmd_seconds=int(mmd)
        ).body()
        if text == expected:
            return
        try:
            promise = SignedEntryTimestamp.parse(text)
        except FormatError as exc:
            raise _fail("set", str(exc), **where) from exc
        if promise.origin != self.origin:
            raise _fail(
                "set", f"the SET names log {promise.origin!r}, not {self.origin!r}", **where
            )
        if promise.leaf_hash != leaf_hash:
            raise _fail("set", f"the SET promises leaf {promise.leaf_hash.hex()}", **where)
        if promise.received_at != received_text:
            raise _fail("set", f"the SET gives received_at {promise.received_at}", **where)
        raise _fail("set", "the SET text is not the one this entry's fields give", **where)

    # --- the tree ---------------------------------------------------------------------------

    def _level(self, level: int) -> _TileLevel:
        while len(self.levels) <= level:
            self.levels.append(_TileLevel(len(self.levels)))
        return self.levels[level]

    def _leaf_push(
        self, row: tuple[Any, ...], leaf_index: int, batch: Batch, tree_hash: bytes | None
    ) -> None:
        leaf_hash = bytes(row[5])
        where = {
            "entry": str(row[1]),
            "leaf_index": leaf_index,
            "seq": row[0],
            "batch": batch.number,
        }
        tile = _tile_name(0, leaf_index // TILE_WIDTH)
        if tree_hash is None:
            raise _fail("tile", f"no stored tile {tile} reaches this leaf", tile=tile, **where)
        if tree_hash != leaf_hash:
            raise self._leaf_or_tile(batch, leaf_index, where, tile)
        self.stack.push(leaf_hash)
        self._node_push(0, leaf_hash, batch)
        stream = row[7]
        if stream:
            size, stack = self.streams.setdefault(stream, (0, RootStack()))
            self.batch_streams.setdefault(stream, size)
            if size % STREAM_MARK_EVERY == 0:
                self.batch_marks.append((stream, size, row[0]))
            stack.push(leaf_hash)
            self.streams[stream] = (size + 1, stack)

    def _leaf_or_tile(
        self, batch: Batch, leaf_index: int, where: dict[str, Any], tile: str
    ) -> _Found:
        """The entry and the stored tree disagree on this leaf: the signed checkpoint decides which
        is wrong. Every leaf before this one agreed, so the root of the batch recomputed from the
        stored leaf hashes from here on tells whether the tiles are the signed tree."""
        try:
            signed_root = Checkpoint.parse(note_split(batch.checkpoint)[0]).root
        except (NoteError, FormatError):
            signed_root = bytes(batch.root)
        stack = self.stack.copy()
        for stored in self._stored_leaves(leaf_index, batch.tree_size):
            if stored is None:
                break
            stack.push(stored)
        else:
            if stack.root() == signed_root:
                return _fail(
                    "entry_position",
                    "the signed tree holds another leaf at this index: the entry was moved, "
                    "swapped or replaced",
                    **where,
                )
        return _fail(
            "tile",
            f"stored tile {tile} holds another hash for this leaf than the entry's, and the "
            f"stored tiles do not give batch {batch.number}'s signed root",
            tile=tile,
            **where,
        )

    def _stored_leaves(self, start: int, stop: int) -> Iterator[bytes | None]:
        current = self._level(0)
        for index in range(start // TILE_WIDTH, (stop - 1) // TILE_WIDTH + 1):
            if index == current.index:
                versions = current.loaded_versions()
                widest = versions[-1][1] if versions else b""
            else:
                widest = bytes(
                    Tile.objects.filter(level=0, index=index)
                    .order_by("-width")
                    .values_list("hashes", flat=True)
                    .first()
                    or b""
                )
            for leaf in range(max(start, index * TILE_WIDTH), min(stop, (index + 1) * TILE_WIDTH)):
                position = leaf % TILE_WIDTH
                stored = widest[position * HASH : (position + 1) * HASH]
                yield stored if len(stored) == HASH else None

    def _node_push(self, level: int, node: bytes, batch: Batch) -> None:
        tiles = self._level(level)
        position = len(tiles.hashes)
        if level > 0:
            stored = tiles.stored_hash(position)
            if stored != node:
                tile = _tile_name(level, tiles.index)
                first, last = self._leaves_under(level, tiles.index * TILE_WIDTH + position)
                raise _fail(
                    "tile",
                    f"stored node {position} of tile {tile} (over leaves {first}..{last}) "
                    + ("is not stored" if stored is None else "is not the hash of the level below"),
                    tile=tile,
                    batch=batch.number,
                )
        tiles.hashes.append(node)
        if len(tiles.hashes) == TILE_WIDTH:
            parent = merkle.root_from_leaves(tiles.hashes)
            self._tile_close(tiles, batch)
            self._node_push(level + 1, parent, batch)

    def _leaves_under(self, level: int, node_index: int) -> tuple[int, int]:
        span = 1 << (TILE_HEIGHT * level)
        return node_index * span, (node_index + 1) * span - 1

    def _tile_close(self, tiles: _TileLevel, batch: Batch | None) -> None:
        # A missing version was found already: every hash is compared with the widest as it comes.
        index = tiles.index
        widths = {width for width, _ in tiles.loaded_versions()}
        for width, position in tiles.close():
            first, _ = self._leaves_under(tiles.level, index * TILE_WIDTH + position)
            raise _fail(
                "tile",
                f"stored version {width} wide differs at position {position} (leaf {first}) from "
                "the recomputed hashes",
                tile=_tile_name(tiles.level, index, width),
                leaf_index=first if tiles.level == 0 else None,
                batch=batch.number if batch else None,
            )
        self.report.tiles += len(widths)

    def _tiles_finish(self, head: int) -> None:
        for tiles in self.levels:
            if tiles.hashes:
                self._tile_close(tiles, None)
            tiles.beyond.extend(tiles.remaining())
        beyond = [
            (tiles.level, index, width) for tiles in self.levels for index, width in tiles.beyond
        ]
        beyond += list(
            Tile.objects.filter(stream="", level__gte=len(self.levels))
            .order_by("level", "index", "width")
            .values_list("level", "index", "width")
        )
        if not beyond:
            return
        if Batch.objects.filter(number__gt=head).exists():
            self.report.tiles_after_head = len(beyond)
            return
        level, index, width = beyond[0]
        raise _fail(
            "tile",
            f"stored tile lies beyond the tree of size {self.report.tree_size}",
            tile=_tile_name(level, index, width),
        )


def _set_leaf_hash(set_note: str) -> bytes | None:
    try:
        return SignedEntryTimestamp.parse(note_split(set_note)[0]).leaf_hash
    except (NoteError, FormatError):
        return None


def ledger_verify(
    *,
    keys: list[VerifierKey] | None,
    tsa_ca_pem: bytes | None,
    progress: Progress | None = None,
) -> LedgerReport:
    """Walks every entry in seq order and every batch in number order, recomputing leaf hashes,
    SETs, tiles, roots, headers, the chain, checkpoint signatures and built-in time-stamps; stops
    at the first mismatch. keys None means the log's published keys (LogKey rows); pinning keys
    from elsewhere also catches a key that was added to the database to forge signatures.
    progress(n) is called as entries are checked."""
    started = time.monotonic()
    checker: _LedgerCheck | None = None
    try:
        with _snapshot():
            checker = _LedgerCheck(
                _published_keys() if keys is None else keys, tsa_ca_pem, progress
            )
            checker.run()
    except _Found as found:
        report = checker.report if checker is not None else LedgerReport()
        report.mismatch = found.mismatch
    else:
        report = checker.report
    report.seconds = round(time.monotonic() - started, 3)
    return report


__all__ = ["LedgerReport", "Mismatch", "RootStack", "ledger_verify"]
