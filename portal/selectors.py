"""Reads behind the portal's pages: batches page by page, anchors, keys, entries and their paths."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from veridict_verify import merkle
from veridict_verify.note import note_split

from audit import document_selectors
from audit.models import Document
from timestamping import selectors as log_selectors
from timestamping import tree
from timestamping.anchor_backends import (
    BUILTIN,
    EthereumBackend,
    RFC3161Backend,
    anchor_receipt_fields,
    backends_configured,
)
from timestamping.models import Anchor, AnchorJob, Batch, Entry, LogKey

BATCHES_PER_PAGE = 25
# The tree-size chart samples at most this many batches, however long the log grows.
CHART_POINTS = 120


@dataclass(frozen=True)
class AnchorSource:
    """A source of anchors and whether its evidence comes from someone other than us."""

    name: str
    type: str
    independent: bool
    where: str
    retired: bool = False


@dataclass
class BatchRow:
    number: int
    tree_size: int
    size: int
    sealed_at: datetime
    # Sources whose anchor is over this very batch's checkpoint.
    anchored_here: list[str] = field(default_factory=list)
    # Sources that anchored a later checkpoint, which (with a consistency proof) covers this one.
    covered_later: dict[str, int] = field(default_factory=dict)
    # Sources with no anchor at or after this batch yet.
    waiting: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BatchPage:
    rows: list[BatchRow]
    page: int
    pages: int
    latest: Batch | None


@dataclass(frozen=True)
class PathStep:
    """One level of an inclusion path, leaf side first: the node on the path, its sibling from the
    proof, and the parent they hash to."""

    level: int
    node: bytes
    node_range: tuple[int, int]
    sibling: bytes
    sibling_range: tuple[int, int]
    sibling_on_left: bool
    parent: bytes


@dataclass(frozen=True)
class InclusionPath:
    leaf_index: int
    tree_size: int
    leaf_hash: bytes
    steps: list[PathStep]
    root: bytes
    # The root the batch's signed checkpoint states; the path is right iff both agree.
    checkpoint_root: bytes

    @property
    def matches(self) -> bool:
        return self.root == self.checkpoint_root


def anchor_sources() -> list[AnchorSource]:
    """The built-in TSA (ours, so not independent) and every configured outside backend."""
    sources = [AnchorSource(BUILTIN, "rfc3161", False, "this instance's own TSA")]
    for name, backend in backends_configured().items():
        # Never the RPC URL: a provider's path usually holds an API key.
        if isinstance(backend, RFC3161Backend):
            where = backend.url
        elif isinstance(backend, EthereumBackend):
            where = f"Ethereum chain id {backend.chain_id}"
        else:
            where = backend.type
        sources.append(AnchorSource(name, backend.type, True, where, backend.retired))
    return sources


def batch_page(*, page: int, per_page: int = BATCHES_PER_PAGE) -> BatchPage:
    """Batches newest first. Batch numbers run 1..latest without gaps (each chains to the one
    before), so a page is a range of numbers, not an OFFSET scan."""
    latest = log_selectors.batch_latest()
    if latest is None:
        return BatchPage([], 1, 1, None)
    pages = max(1, -(-latest.number // per_page))
    page = min(max(page, 1), pages)
    high = latest.number - (page - 1) * per_page
    low = max(1, high - per_page + 1)
    batches = list(
        Batch.objects.filter(number__gte=low, number__lte=high)
        .order_by("-number")
        .only("number", "tree_size", "prev_tree_size", "sealed_at")
    )
    rows = [
        BatchRow(b.number, b.tree_size, b.tree_size - b.prev_tree_size, b.sealed_at)
        for b in batches
    ]
    _anchor_states(rows, low)
    return BatchPage(rows, page, pages, latest)


def _anchor_states(rows: list[BatchRow], low: int) -> None:
    """Per source, one query: the anchored batch numbers from the page's lowest on."""
    for source in anchor_sources():
        anchored = list(
            Anchor.objects.filter(backend=source.name, batch__number__gte=low)
            .order_by("batch__number")
            .values_list("batch__number", flat=True)[: len(rows) + 1]
        )
        for row in rows:
            later = next((number for number in anchored if number >= row.number), None)
            if later == row.number:
                row.anchored_here.append(source.name)
            elif later is not None:
                row.covered_later[source.name] = later
            else:
                row.waiting.append(source.name)


def batch_detail(*, number: int) -> dict[str, Any]:
    """A batch with its parsed header, neighbours, anchors and anchoring jobs."""
    batch = log_selectors.batch_get(number=number)
    header = json.loads(bytes(batch.header))
    consistency = [bytes.fromhex(step) for step in header.get("consistency", [])]
    consistency_ok: bool | None = None
    if batch.prev_tree_size:
        try:
            merkle.verify_consistency(
                batch.prev_tree_size,
                batch.tree_size,
                bytes.fromhex(header["prev_root"]),
                bytes(batch.root),
                consistency,
            )
            consistency_ok = True
        except merkle.ProofError:
            consistency_ok = False
    anchors = []
    for anchor in batch.anchors.order_by("type", "backend"):
        anchors.append(
            {"anchor": anchor, "evidence": anchor_receipt_fields(anchor), "size": len(anchor.tsr)}
        )
    has_next = Batch.objects.filter(number=number + 1).exists()
    return {
        "batch": batch,
        "size": batch.tree_size - batch.prev_tree_size,
        "header": header,
        "header_hash": bytes(batch.header_hash).hex(),
        "root": bytes(batch.root).hex(),
        "consistency_ok": consistency_ok,
        "anchors": anchors,
        "anchor_jobs": list(AnchorJob.objects.filter(batch=batch).order_by("backend")),
        "prev_number": number - 1 if number > 1 else None,
        "next_number": number + 1 if has_next else None,
    }


def checkpoint_body(note: str) -> str:
    """The signed text of a note: what RFC 3161 anchors time-stamp (SHA-256 of it)."""
    body, _ = note_split(note)
    return body


def anchor_of_batch(*, number: int, backend: str) -> Anchor:
    anchor = (
        Anchor.objects.filter(batch__number=number, backend=backend).select_related("batch").first()
    )
    if anchor is None:
        raise log_selectors.NotInLog(f"batch {number} has no anchor by {backend}")
    return anchor


def tree_size_series(*, points: int = CHART_POINTS) -> list[tuple[datetime, int]]:
    """(sealed_at, tree_size) of at most `points` batches spread evenly over the log, the first
    and the latest always included."""
    latest = log_selectors.batch_latest()
    if latest is None:
        return []
    count = latest.number
    if count <= points:
        numbers: set[int] = set(range(1, count + 1))
    else:
        numbers = {1 + round(i * (count - 1) / (points - 1)) for i in range(points)}
    return list(
        Batch.objects.filter(number__in=numbers)
        .order_by("number")
        .values_list("sealed_at", "tree_size")
    )


def log_keys() -> list[LogKey]:
    return list(LogKey.objects.order_by("-first_used_at"))


def inclusion_path(*, entry: Entry, batch: Batch) -> InclusionPath:
    """The entry's path from its leaf to the root of its batch's checkpoint: the proof's hashes in
    RFC 9162 order, with the range of leaves each node covers and the parents they hash to."""
    leaf_index = batch.leaf_index_of(entry.seq)
    size = batch.tree_size
    proof = tree.inclusion_proof(leaf_index, size)
    # The ranges, top down as the RFC splits the tree, then reversed to the proof's order.
    ranges: list[tuple[tuple[int, int], tuple[int, int]]] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + merkle.split_point(hi - lo)
        if leaf_index < mid:
            ranges.append(((lo, mid), (mid, hi)))
            hi = mid
        else:
            ranges.append(((mid, hi), (lo, mid)))
            lo = mid
    ranges.reverse()
    if len(ranges) != len(proof):
        raise AssertionError("the stored proof does not have one hash per level")
    steps: list[PathStep] = []
    node = bytes(entry.leaf_hash)
    for level, (sibling, (node_range, sibling_range)) in enumerate(zip(proof, ranges, strict=True)):
        on_left = sibling_range[0] < node_range[0]
        parent = merkle.node_hash(sibling, node) if on_left else merkle.node_hash(node, sibling)
        steps.append(PathStep(level, node, node_range, sibling, sibling_range, on_left, parent))
        node = parent
    return InclusionPath(leaf_index, size, bytes(entry.leaf_hash), steps, node, bytes(batch.root))


def entry_page(*, entry: Entry) -> dict[str, Any]:
    batch = log_selectors.batch_of_entry(entry=entry)
    document = (
        Document.objects.filter(entry=entry).select_related("system").first()
        if entry.kind == "document"
        else None
    )
    return {
        "entry": entry,
        "leaf_hash": bytes(entry.leaf_hash).hex(),
        "batch": batch,
        "path": inclusion_path(entry=entry, batch=batch) if batch is not None else None,
        "document": document if document is not None and not document.private else None,
    }


@dataclass(frozen=True)
class Registration:
    document: Document
    position: document_selectors.LogPosition | None
    anchors: list[dict[str, Any]]


def document_registrations(*, sha256: str) -> list[Registration]:
    """Public registrations of a digest, oldest first, with where each is in the log and which
    sources anchored its batch (or a later checkpoint covering it)."""
    registrations = []
    for document in document_selectors.documents_visible(sha256=sha256, system=None):
        position = document_selectors.document_position(document=document)
        anchors: list[dict[str, Any]] = []
        if position is not None:
            for source in anchor_sources():
                anchor = (
                    Anchor.objects.filter(backend=source.name, batch__number__gte=position.batch)
                    .select_related("batch")
                    .order_by("batch__number")
                    .first()
                )
                if anchor is not None:
                    anchors.append({"source": source, "anchor": anchor})
        registrations.append(Registration(document, position, anchors))
    return registrations
