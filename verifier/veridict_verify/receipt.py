"""Verifies a Veridict receipt step by step: leaf, set, inclusion, checkpoint_signature,
batch_header, stream_inclusion (an entry of a stream), anchor[i]. The same step names appear in
the CLI, the browser and the docs."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeGuard

from veridict_verify import merkle
from veridict_verify.ethereum import ChainAnchor, ChainError, RPCNode, chain_anchor_verify
from veridict_verify.formats import (
    ZERO_HASH_HEX,
    Checkpoint,
    FormatError,
    SignedEntryTimestamp,
    format_time,
    parse_time,
)
from veridict_verify.note import NoteError, VerifierKey, note_open, note_split
from veridict_verify.timestamp import TimestampError, timestamp_verify

RECEIPT_VERSION = "veridict.receipt/v1"
OK, FAILED, PENDING, SKIPPED = "ok", "failed", "pending", "skipped"
ANCHOR_TYPES = ("rfc3161", "ethereum")


class StepFailed(Exception):
    """Raised inside a step with the reason a person reads."""


@dataclass
class Step:
    name: str
    status: str
    detail: str


@dataclass
class Report:
    steps: list[Step] = field(default_factory=list)

    @property
    def failed(self) -> Step | None:
        return next((step for step in self.steps if step.status == FAILED), None)

    @property
    def pending(self) -> bool:
        return any(step.status == PENDING for step in self.steps)

    @property
    def ok(self) -> bool:
        return self.failed is None and not self.pending

    def as_dict(self) -> dict[str, Any]:
        verdict = "failed" if self.failed else "pending" if self.pending else "verified"
        return {"verdict": verdict, "steps": [asdict(step) for step in self.steps]}


def strict_json(raw: bytes, what: str) -> Any:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [key for key, _ in pairs]
        if len(keys) != len(set(keys)):
            raise StepFailed(f"{what} repeats a key")
        return dict(pairs)

    try:
        return json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        raise StepFailed(f"{what} is not JSON: {exc}") from exc


def json_integer(value: Any) -> TypeGuard[int]:
    """A JSON integer: not a float (4.0, 4e0) nor a boolean, which Python's == would let pass
    as one. The browser's verifier keeps to the same rule (static/verifier/bytes.js)."""
    return type(value) is int


def json_same(value: Any, expected: object) -> bool:
    return type(value) is type(expected) and value == expected


def b64_field(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise StepFailed(f"{what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise StepFailed(f"{what} is not base64") from exc


def hex_hash(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 64:
        raise StepFailed(f"{what} is not a 64-digit hex hash")
    try:
        return bytes.fromhex(value)
    except ValueError as exc:
        raise StepFailed(f"{what} is not hex") from exc


def hex_list(value: Any, what: str) -> list[bytes]:
    if not isinstance(value, list):
        raise StepFailed(f"{what} is not a list of hex hashes")
    return [hex_hash(item, f"{what}[{i}]") for i, item in enumerate(value)]


def note_text(note: Any, keys: list[VerifierKey], what: str) -> tuple[str, VerifierKey]:
    if not isinstance(note, str):
        raise StepFailed(f"{what} is missing")
    try:
        return note_open(note, keys)
    except NoteError as exc:
        raise StepFailed(f"{what}: {exc}") from exc


def _checkpoint_text(note: Any, what: str) -> Checkpoint:
    if not isinstance(note, str):
        raise StepFailed(f"{what} is missing")
    try:
        text, _ = note_split(note)
        return Checkpoint.parse(text)
    except (NoteError, FormatError) as exc:
        raise StepFailed(f"{what}: {exc}") from exc


class _Verification:
    """One receipt's checks; each method is one step and raises StepFailed with the reason."""

    def __init__(
        self,
        receipt: dict[str, Any],
        keys: list[VerifierKey],
        tsa_ca_pem: bytes | None,
        document_sha256: bytes | None,
        nodes: list[RPCNode],
    ) -> None:
        self.receipt = receipt
        self.keys = keys
        self.tsa_ca_pem = tsa_ca_pem
        self.document_sha256 = document_sha256
        self.nodes = nodes
        entry = receipt.get("entry")
        self.entry: dict[str, Any] = entry if isinstance(entry, dict) else {}

    def leaf(self) -> str:
        canonical = b64_field(self.entry.get("canonical_b64"), "entry.canonical_b64")
        claimed = hex_hash(self.entry.get("leaf_hash"), "entry.leaf_hash")
        if merkle.leaf_hash(canonical) != claimed:
            raise StepFailed("SHA-256(0x00 || canonical bytes) is not entry.leaf_hash")
        leaf = strict_json(canonical, "the leaf")
        if not isinstance(leaf, dict) or not json_same(leaf.get("v"), 1):
            raise StepFailed("the leaf is not a version 1 Veridict leaf")
        for name in ("id", "kind", "received_at"):
            if leaf.get(name) != self.entry.get(name):
                raise StepFailed(f"entry.{name} differs from the {name} inside the leaf")
        if "stream" in leaf and not isinstance(leaf["stream"], str):
            raise StepFailed("the leaf's stream is not a string")
        self.leaf_stream: str | None = leaf.get("stream")
        if self.document_sha256 is not None:
            how = self._document(leaf.get("body"), self.document_sha256)
            return f"leaf hash {claimed.hex()} matches; it registers this document ({how})"
        return f"leaf hash {claimed.hex()} matches the canonical bytes"

    def _document(self, body: Any, digest: bytes) -> str:
        """Checks that the leaf body registers the document with this SHA-256: by its digest, or
        (a private document) by SHA-256(salt || digest) with the salt the receipt carries."""
        if isinstance(body, dict) and "sha256" in body:
            if body["sha256"] != digest.hex():
                raise StepFailed("the document's SHA-256 is not the one this entry registered")
            return "by its SHA-256"
        if isinstance(body, dict) and "commitment" in body:
            document = self.receipt.get("document")
            salt = b64_field(
                document.get("salt_b64") if isinstance(document, dict) else None,
                "document.salt_b64 (a private document's receipt carries it only when fetched "
                "with its AI system's key)",
            )
            if hashlib.sha256(salt + digest).hexdigest() != body["commitment"]:
                raise StepFailed(
                    "SHA-256(document.salt_b64 || the document's SHA-256) is not the commitment "
                    "this entry registered"
                )
            return "private: by its salted commitment"
        raise StepFailed("the entry registers no document: its body has no sha256 or commitment")

    def set(self) -> str:
        text, key = note_text(self.receipt.get("set"), self.keys, "set")
        try:
            promise = SignedEntryTimestamp.parse(text)
        except FormatError as exc:
            raise StepFailed(str(exc)) from exc
        if promise.origin != key.name:
            raise StepFailed(f"the SET names log {promise.origin!r}, not {key.name!r}")
        if promise.leaf_hash.hex() != self.entry.get("leaf_hash"):
            raise StepFailed("the SET promises another leaf")
        if promise.received_at != self.entry.get("received_at"):
            raise StepFailed("the SET gives another received_at")
        self.promise = promise
        return (
            f"signed by {key.name}+{key.key_id.hex()}: "
            f"include by {promise.mmd_seconds} s after {promise.received_at}"
        )

    def inclusion(self) -> str:
        proof = self.receipt.get("proof")
        if not isinstance(proof, dict):
            raise StepFailed("proof is not an object")
        checkpoint = _checkpoint_text(self.receipt.get("checkpoint"), "checkpoint")
        index, size = proof.get("leaf_index"), proof.get("tree_size")
        if not json_integer(index) or not json_integer(size):
            raise StepFailed("proof.leaf_index and proof.tree_size must be integers")
        if size != checkpoint.tree_size:
            raise StepFailed(
                f"proof.tree_size {size} is not the checkpoint's size {checkpoint.tree_size}"
            )
        path = hex_list(proof.get("inclusion"), "proof.inclusion")
        leaf_hash = hex_hash(self.entry.get("leaf_hash"), "entry.leaf_hash")
        try:
            merkle.verify_inclusion(index, size, leaf_hash, path, checkpoint.root)
        except merkle.ProofError as exc:
            raise StepFailed(str(exc)) from exc
        self.checkpoint = checkpoint
        self.leaf_index = index
        return f"leaf {index} is in the tree of size {size}"

    def checkpoint_signature(self) -> str:
        _, key = checkpoint_open(self.receipt.get("checkpoint"), self.keys)
        return f"signed by {key.name}+{key.key_id.hex()}"

    def batch_header(self) -> str:
        checkpoint = self.checkpoint
        header = batch_header_check(self.receipt.get("batch"), checkpoint)
        self.header = header
        prev_size = header["prev_tree_size"]
        if not prev_size <= self.leaf_index < checkpoint.tree_size:
            raise StepFailed(f"leaf {self.leaf_index} is not among this batch's leaves")
        try:
            sealed_at = parse_time(header.get("sealed_at", ""))
        except FormatError as exc:
            raise StepFailed(str(exc)) from exc
        delay = (sealed_at - parse_time(self.promise.received_at)).total_seconds()
        if delay > self.promise.mmd_seconds:
            raise StepFailed(
                f"sealed {delay:.0f} s after receipt, "
                f"beyond the {self.promise.mmd_seconds} s the SET promised"
            )
        return (
            f"batch {checkpoint.batch_number} extends tree size {prev_size}, "
            f"sealed at {format_time(sealed_at)}"
        )

    def stream_inclusion(self) -> str:
        """The entry is in its stream's tree (its system log) as the batch header committed to
        it: the leaf names the stream, the header (v2) lists that stream's size and root."""
        stream = self.receipt.get("stream")
        if self.leaf_stream is None:
            raise StepFailed("the receipt has a stream proof but the leaf names no stream")
        if not isinstance(stream, dict):
            raise StepFailed("stream is not an object")
        if not json_same(stream.get("id"), self.leaf_stream):
            raise StepFailed("stream.id is not the stream the leaf names")
        head = stream_head(self.header, self.leaf_stream)
        index, tree_size = stream.get("leaf_index"), stream.get("tree_size")
        if not (json_integer(index) and json_integer(tree_size)):
            raise StepFailed("stream sizes and leaf_index must be integers")
        if tree_size != head.size:
            raise StepFailed(
                f"stream.tree_size {tree_size} is not the stream's size {head.size} in the header"
            )
        if not head.prev_size <= index < head.size:
            raise StepFailed(f"stream leaf {index} is not among this batch's leaves of the stream")
        path = hex_list(stream.get("inclusion"), "stream.inclusion")
        leaf_hash = hex_hash(self.entry.get("leaf_hash"), "entry.leaf_hash")
        try:
            merkle.verify_inclusion(index, head.size, leaf_hash, path, head.root)
        except merkle.ProofError as exc:
            raise StepFailed(str(exc)) from exc
        return f"leaf {index} is in stream {self.leaf_stream} of size {head.size}"

    def anchor(self, anchor: Any) -> tuple[str, str]:
        return anchor_check(
            anchor,
            checkpoint=self.checkpoint,
            keys=self.keys,
            tsa_ca_pem=self.tsa_ca_pem,
            nodes=self.nodes,
        )


# --- Checks of a batch, shared with evidence packages (veridict_verify.evidence) ---------------


def checkpoint_open(
    note: Any, keys: list[VerifierKey], what: str = "checkpoint"
) -> tuple[Checkpoint, VerifierKey]:
    """A checkpoint that a pinned key signed, for the log that key is named after."""
    text, key = note_text(note, keys, what)
    checkpoint = Checkpoint.parse(text)
    if checkpoint.origin != key.name:
        raise StepFailed(f"the {what} names another log than {key.name!r}")
    return checkpoint, key


def batch_header_check(batch: Any, checkpoint: Checkpoint) -> dict[str, Any]:
    """The batch header that `batch` ({"number", "header_b64", "header_hash"}) carries, checked
    against the checkpoint that signs it: its SHA-256 is the hash the checkpoint's extension
    line names; its origin, number, size and root are the checkpoint's; and it extends the
    previous tree (prev_tree_size an integer, the consistency proof from prev_root)."""
    if not isinstance(batch, dict):
        raise StepFailed("batch is not an object")
    raw = b64_field(batch.get("header_b64"), "batch.header_b64")
    digest = hashlib.sha256(raw).digest()
    if digest != hex_hash(batch.get("header_hash"), "batch.header_hash"):
        raise StepFailed("SHA-256 of the header is not batch.header_hash")
    if digest != checkpoint.header_hash:
        raise StepFailed("the checkpoint signs another batch header")
    header = strict_json(raw, "the batch header")
    if not isinstance(header, dict):
        raise StepFailed("the batch header is not an object")
    expected = {
        "origin": checkpoint.origin,
        "number": checkpoint.batch_number,
        "tree_size": checkpoint.tree_size,
        "root": checkpoint.root.hex(),
    }
    for name, value in expected.items():
        if not json_same(header.get(name), value):
            raise StepFailed(f"header {name} is not the checkpoint's")
    if not json_same(batch.get("number"), checkpoint.batch_number):
        raise StepFailed("batch.number is not the checkpoint's batch number")
    prev_size = header.get("prev_tree_size")
    if not json_integer(prev_size) or not 0 <= prev_size <= checkpoint.tree_size:
        raise StepFailed("header prev_tree_size is not a size up to the checkpoint's")
    prev_root = hex_hash(header.get("prev_root"), "header prev_root")
    consistency = hex_list(header.get("consistency"), "header consistency")
    if prev_size == 0:
        if header.get("prev_header_hash") != ZERO_HASH_HEX or consistency:
            raise StepFailed("the first batch must have a zero prev_header_hash and no proof")
    else:
        hex_hash(header.get("prev_header_hash"), "header prev_header_hash")
        try:
            merkle.verify_consistency(
                prev_size, checkpoint.tree_size, prev_root, checkpoint.root, consistency
            )
        except merkle.ProofError as exc:
            raise StepFailed(f"the batch does not extend the previous tree: {exc}") from exc
    return header


@dataclass(frozen=True)
class StreamHead:
    """A stream's sizes before and after a batch and its tree's root after it, as the batch
    header (version 2) lists them."""

    prev_size: int
    size: int
    root: bytes


def stream_head(header: dict[str, Any], stream: str) -> StreamHead:
    """The item of a version 2 header for this stream, which must be listed exactly once."""
    listed = header.get("streams")
    if not json_same(header.get("v"), 2) or not isinstance(listed, list):
        raise StepFailed("the batch header is not version 2: it commits to no stream")
    items = [item for item in listed if isinstance(item, dict)]
    mine = [item for item in items if item.get("id") == stream]
    if len(items) != len(listed) or len(mine) != 1:
        raise StepFailed(f"the batch header does not list stream {stream} once")
    (item,) = mine
    size, prev_size = item.get("size"), item.get("prev_size")
    if not (json_integer(size) and json_integer(prev_size)):
        raise StepFailed("stream sizes and leaf_index must be integers")
    if not 0 <= prev_size <= size:
        raise StepFailed(f"the header's sizes of stream {stream} shrink: {prev_size} to {size}")
    return StreamHead(prev_size, size, hex_hash(item.get("root"), "header stream root"))


def anchor_check(
    anchor: Any,
    *,
    checkpoint: Checkpoint,
    keys: list[VerifierKey],
    tsa_ca_pem: bytes | None,
    nodes: list[RPCNode],
) -> tuple[str, str]:
    """One anchor of `checkpoint`: an anchored checkpoint a pinned key signed, consistent with
    it, and the anchor's own evidence (a time-stamp against the pinned TSA CA, a transaction on
    the user's own node); (status, detail), SKIPPED when nothing was pinned to check it with."""
    if not isinstance(anchor, dict):
        raise StepFailed("the anchor is not an object")
    if anchor.get("type") not in ANCHOR_TYPES:
        raise StepFailed(f"anchor type {anchor.get('type')!r} is not one this verifier checks")
    text, _ = note_text(anchor.get("checkpoint"), keys, "anchor checkpoint")
    anchored = Checkpoint.parse(text)
    if anchored.origin != checkpoint.origin:
        raise StepFailed("the anchored checkpoint is of another log")
    proof = hex_list(anchor.get("consistency"), "anchor consistency")
    try:
        merkle.verify_consistency(
            checkpoint.tree_size, anchored.tree_size, checkpoint.root, anchored.root, proof
        )
    except merkle.ProofError as exc:
        raise StepFailed(f"the anchored tree does not extend the entry's: {exc}") from exc
    if anchor["type"] == "ethereum":
        return _ethereum(anchor, text, anchored, nodes)
    source = f"time-stamp by {anchor.get('tsa')} of tree size {anchored.tree_size}"
    if tsa_ca_pem is None:
        return (
            SKIPPED,
            f"{source}: consistency checked; no TSA CA pinned, so the time-stamp was not",
        )
    tsr = b64_field(anchor.get("tsr_b64"), "anchor tsr_b64")
    try:
        stamped_at = timestamp_verify(tsr, message=text.encode(), ca_pem=tsa_ca_pem)
    except TimestampError as exc:
        raise StepFailed(str(exc)) from exc
    return OK, f"{source}: existed at {format_time(stamped_at)}"


def _ethereum(
    anchor: dict[str, Any], text: str, anchored: Checkpoint, nodes: list[RPCNode]
) -> tuple[str, str]:
    """The chain part of an ethereum anchor: checked against the user's own node, since the
    receipt's word on a chain proves nothing."""
    try:
        claim = ChainAnchor.parse(anchor)
    except ChainError as exc:
        raise StepFailed(str(exc)) from exc
    source = f"{claim.describe()}, of tree size {anchored.tree_size}"
    if not nodes:
        return (
            SKIPPED,
            f"{source}: consistency checked; no --rpc-url given, so the chain was not",
        )
    node = _node_for(claim.chain_id, nodes)
    try:
        confirmations = chain_anchor_verify(claim, body=text.encode(), node=node)
    except ChainError as exc:
        raise StepFailed(str(exc)) from exc
    return (
        OK,
        f"{source}: existed at {format_time(claim.block_time)}, "
        f"{confirmations} confirmation{'s' if confirmations != 1 else ''} "
        f"(node {node.name})",
    )


def _node_for(chain_id: int, nodes: list[RPCNode]) -> RPCNode:
    """The given node of this chain. With one node, that node: the check then says which
    chain it serves if it is another."""
    if len(nodes) == 1:
        return nodes[0]
    served = []
    for node in nodes:
        try:
            if node.chain_id() == chain_id:
                return node
            served.append(f"{node.name} chain {node.chain_id()}")
        except ChainError as exc:
            served.append(str(exc))
    raise StepFailed(f"no --rpc-url node serves chain {chain_id}: {'; '.join(served)}")


def receipt_verify(
    receipt: Any,
    *,
    keys: list[VerifierKey],
    tsa_ca_pem: bytes | None = None,
    document_sha256: bytes | None = None,
    rpc_urls: Sequence[str] = (),
) -> Report:
    """Runs the steps in order and stops at the first that fails; a receipt of an entry that is
    not sealed yet verifies up to `set` and reports the rest as pending. Ethereum anchors are
    checked against the JSON-RPC nodes at `rpc_urls` (yours: the chain's word is only as good
    as the node you ask); without one, their step is skipped."""
    report = Report()
    if not isinstance(receipt, dict) or receipt.get("version") != RECEIPT_VERSION:
        report.steps.append(Step("leaf", FAILED, f"not a {RECEIPT_VERSION} receipt"))
        return report
    nodes = [RPCNode(url) for url in rpc_urls]
    check = _Verification(receipt, keys, tsa_ca_pem, document_sha256, nodes)

    def run(name: str, step: Callable[[], str | tuple[str, str]]) -> bool:
        try:
            outcome = step()
        except (StepFailed, FormatError) as exc:
            report.steps.append(Step(name, FAILED, str(exc)))
            return False
        status, detail = outcome if isinstance(outcome, tuple) else (OK, outcome)
        report.steps.append(Step(name, status, detail))
        return True

    if not (run("leaf", check.leaf) and run("set", check.set)):
        return report
    # Only an entry of a stream has the step: receipts of other entries (and every receipt
    # from before streams) verify with the steps they always had.
    in_stream = check.leaf_stream is not None or receipt.get("stream") is not None
    if receipt.get("proof") is None:
        for name in ("inclusion", "checkpoint_signature", "batch_header") + (
            ("stream_inclusion",) if in_stream else ()
        ):
            report.steps.append(
                Step(name, PENDING, "not sealed yet: fetch the receipt again later")
            )
        return report
    for name, step in (
        ("inclusion", check.inclusion),
        ("checkpoint_signature", check.checkpoint_signature),
        ("batch_header", check.batch_header),
    ) + ((("stream_inclusion", check.stream_inclusion),) if in_stream else ()):
        if not run(name, step):
            return report
    anchors = receipt.get("anchors")
    if not isinstance(anchors, list):
        report.steps.append(Step("anchor[0]", FAILED, "anchors is not a list"))
        return report
    for position, anchor in enumerate(anchors):
        if not run(f"anchor[{position}]", functools.partial(check.anchor, anchor)):
            return report
    return report
