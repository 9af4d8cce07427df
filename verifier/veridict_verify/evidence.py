"""Checks an evidence package (docs/evidence.md, `veridict.evidence/v1`) read line by line, in
bounded memory: the ledger steps (header, checkpoint_signature, batch_header, anchor[i], leaf,
completeness, openings), then the bias report and the oversight facts recomputed from the
opened leaves. Per batch it keeps a few hashes; per decision, the few fields the bias report
and the oversight checks need."""

from __future__ import annotations

import binascii
import dataclasses
import datetime
import gzip
import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from veridict_verify import bias, canonical, merkle
from veridict_verify.ethereum import RPCNode
from veridict_verify.formats import Checkpoint, FormatError, parse_time
from veridict_verify.note import VerifierKey
from veridict_verify.oversight import (
    FAILURES_SHOWN,
    DecisionFacts,
    LedgerFacts,
    oversight_check,
    review_final,
)
from veridict_verify.receipt import (
    FAILED,
    OK,
    PENDING,
    SKIPPED,
    Report,
    Step,
    StepFailed,
    StreamHead,
    anchor_check,
    batch_header_check,
    checkpoint_open,
    hex_list,
    json_integer,
    json_same,
    stream_head,
)

EVIDENCE_VERSION = "veridict.evidence/v1"
LEDGER_STEPS = ("header", "checkpoint_signature", "batch_header")
ENTRY_STEPS = ("leaf", "completeness", "openings")
# Openings a decision must carry unless its subject was erased: the bias report and the owner
# check rest on them (docs/evidence.md, `entry`).
REQUIRED_OPENINGS = ("protected_attributes", "owner")


class PackageUnreadable(ValueError):
    """Not a gzip NDJSON file, or a line that is not a JSON object with a type."""


def package_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The package's lines as JSON objects, one at a time."""
    try:
        with gzip.open(path, "rb") as handle:
            for number, line in enumerate(handle, 1):
                try:
                    item = json.loads(line.decode())
                except ValueError as exc:  # UnicodeDecodeError too
                    raise PackageUnreadable(f"line {number} is not JSON: {exc}") from exc
                if not isinstance(item, dict) or not isinstance(item.get("type"), str):
                    raise PackageUnreadable(f"line {number} is not an object with a type")
                yield item
    except (OSError, EOFError, zlib.error) as exc:
        raise PackageUnreadable(f"{path}: not a complete gzip file: {exc}") from exc


class _Tally:
    """One step over many items: how many passed, and the first failures with where."""

    def __init__(self) -> None:
        self.checked = 0
        self.failed = 0
        self.failures: list[str] = []

    def fail(self, where: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < FAILURES_SHOWN:
            self.failures.append(f"{where}: {reason}")

    def step(self, name: str, detail: str) -> Step:
        if not self.failed:
            return Step(name, OK, detail)
        more = f" (and {self.failed - len(self.failures)} more)" if self.failed > 1 else ""
        return Step(name, FAILED, f"{self.failed} failed{more}: " + "; ".join(self.failures))


@dataclass
class _Batch:
    number: int
    checkpoint: Checkpoint
    sealed_at: str
    head: StreamHead | None = None


@dataclass
class AuditResult:
    """A checked package: the steps (Report), and the facts the text and HTML reports show."""

    report: Report
    facts: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**self.report.as_dict(), **self.facts}


# Python's encoder writes most leaves exactly as RFC 8785 does (canonical.py says why); what it
# writes differently (exponents, keys beyond the BMP) is compared with canonical.dumps itself.
_PLAIN = json.JSONEncoder(
    ensure_ascii=False, check_circular=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def _canonical_json(raw: bytes) -> Any:
    """The leaf's JSON, whose bytes must be its RFC 8785 form (docs/DESIGN.md, Leaf): written
    again from the parsed value they must come out the same, so no key is repeated and no two
    readers can see two different leaves in them. Faster than a parse that watches for
    repeated keys."""
    try:
        text = raw.decode()
        value = json.loads(text)
        if _PLAIN.encode(value) != text and canonical.dumps(value) != raw:
            raise StepFailed("the leaf's bytes are not its RFC 8785 canonical form")
    except (UnicodeDecodeError, ValueError) as exc:
        raise StepFailed(f"the leaf is not RFC 8785 JSON: {exc}") from exc
    return value


def _commitment_of(body: Mapping[str, Any], name: str) -> str | None:
    """The commitment an opening named `name` opens: `body.commitments[name]` (a decision's
    fields), else the body's `<name>_commitment` (a review step's `text_commitment`, which an
    opening may name `text` or `text_commitment`)."""
    commitments = body.get("commitments")
    if isinstance(commitments, dict) and isinstance(commitments.get(name), str):
        return str(commitments[name])
    member = name if name.endswith("_commitment") else f"{name}_commitment"
    found = body.get(member)
    return found if isinstance(found, str) else None


def _opening_check(commitment: str, opening: Any) -> Any:
    """The opened value, if SHA-256(salt || RFC 8785 bytes of value) is the commitment."""
    if not isinstance(opening, dict) or "value" not in opening:
        raise StepFailed("an opening is {salt_b64, value}")
    try:
        salt = binascii.a2b_base64(opening.get("salt_b64") or "", strict_mode=True)
        encoded = canonical.dumps(opening["value"])
    except (binascii.Error, ValueError, TypeError) as exc:
        raise StepFailed(f"the opening cannot be read: {exc}") from exc
    if hashlib.sha256(salt + encoded).hexdigest() != commitment:
        raise StepFailed("SHA-256(salt || RFC 8785 value) is not the commitment")
    return opening["value"]


class _Audit:
    """One package's checks, fed line by line."""

    def __init__(
        self, keys: list[VerifierKey], tsa_ca_pem: bytes | None, nodes: list[RPCNode]
    ) -> None:
        self.keys, self.tsa_ca_pem, self.nodes = keys, tsa_ca_pem, nodes
        self.tallies = {name: _Tally() for name in LEDGER_STEPS + ENTRY_STEPS}
        self.header: dict[str, Any] = {}
        self.header_error: str | None = None
        self.stream = ""
        self.slug = ""
        self.start_size = self.end_size = 0
        self.start_batch = self.end_batch = 0
        self.batches: list[_Batch] = []
        self.anchors: list[list[tuple[str, str, int]]] = []  # per position: (status, detail, batch)
        self.unanchored: list[int] = []
        # completeness, batch by batch
        self.border: list[bytes] = []
        self.border_size = 0
        self.batch_position = 0
        self.batch_leaves: list[bytes] = []
        self.next_index = 0
        self.lines = 0
        self.ended: dict[str, Any] | None = None
        self.erased = 0
        self.openings_checked: dict[str, int] = defaultdict(int)
        self.decisions: dict[str, DecisionFacts] = {}
        self.oversight = LedgerFacts()
        self.kinds: dict[str, int] = defaultdict(int)
        self.attribute_sets: dict[tuple[Any, ...], dict[str, Any]] = {}

    # --- header and batches -------------------------------------------------------------------

    def read_header(self, line: dict[str, Any]) -> None:
        try:
            self._header(line)
        except (StepFailed, FormatError, KeyError, TypeError, binascii.Error, ValueError) as exc:
            self.header_error = str(exc)
            self.tallies["header"].fail("header", str(exc))

    def _header(self, line: dict[str, Any]) -> None:
        self.header = line
        if line.get("type") != "header" or line.get("version") != EVIDENCE_VERSION:
            raise StepFailed(f"the first line is not a {EVIDENCE_VERSION} header")
        system, start, end = line.get("system"), line.get("start"), line.get("end")
        if not isinstance(line.get("origin"), str):
            raise StepFailed("origin is not a string")
        if not isinstance(system, dict) or not all(
            isinstance(system.get(name), str) and system.get(name)
            for name in ("slug", "name", "stream")
        ):
            raise StepFailed("system is not {slug, name, stream}")
        if not isinstance(start, dict) or not isinstance(end, dict):
            raise StepFailed("start and end are not objects")
        sizes = (start.get("batch"), start.get("size"), end.get("batch"), end.get("size"))
        if not all(json_integer(size) and size >= 0 for size in sizes):
            raise StepFailed("start and end batch numbers and sizes are not integers")
        self.start_batch, self.start_size, self.end_batch, self.end_size = (
            int(size or 0) for size in sizes
        )
        if self.start_size > self.end_size or self.start_batch > self.end_batch:
            raise StepFailed("the range ends before it starts")
        self.border = hex_list(start.get("compact_range"), "start.compact_range")
        self.border_size = self.next_index = self.start_size
        if len(self.border) != len(merkle.perfect_subtrees(0, self.start_size)):
            raise StepFailed(
                f"start.compact_range does not have the hashes of size {self.start_size}"
            )
        self.stream, self.slug = system["stream"], system["slug"]
        self.tallies["header"].checked = 1

    def read_batch(self, line: dict[str, Any]) -> None:
        where = f"batch {line.get('number')}"
        try:
            checkpoint, _ = checkpoint_open(line.get("checkpoint"), self.keys)
            if checkpoint.origin != self.header.get("origin"):
                raise StepFailed(f"the checkpoint is of log {checkpoint.origin!r}")
        except (StepFailed, FormatError) as exc:
            self.tallies["checkpoint_signature"].fail(where, str(exc))
            return
        self.tallies["checkpoint_signature"].checked += 1
        try:
            header = batch_header_check(line, checkpoint)
            batch = _Batch(checkpoint.batch_number, checkpoint, str(header.get("sealed_at")))
            parse_time(batch.sealed_at)
            batch.head = stream_head(header, self.stream)
            self._chain(batch)
        except (StepFailed, FormatError) as exc:
            self.tallies["batch_header"].fail(where, str(exc))
            return
        self.tallies["batch_header"].checked += 1
        self.batches.append(batch)
        self._anchors(line.get("anchors"), batch)

    def _chain(self, batch: _Batch) -> None:
        """The stream's sizes follow from a to b without a gap: the start batch stands at a,
        each later batch's prev_size is the previous batch's size."""
        head = batch.head
        assert head is not None
        if not self.batches:
            if self.start_size and (batch.number, head.size) != (
                self.start_batch,
                self.start_size,
            ):
                raise StepFailed(
                    f"the first batch is not the start batch {self.start_batch} at size "
                    f"{self.start_size} of the system log"
                )
            if not self.start_size and head.prev_size != 0:
                raise StepFailed(
                    f"the system log starts at size 0, this batch after {head.prev_size}"
                )
            if self.start_size:
                root = merkle.root_from_compact_range(self.start_size, self.border, [])
                if root != head.root:
                    raise StepFailed(
                        f"start.compact_range does not give the root of size {self.start_size} "
                        "that the start batch's header lists"
                    )
            return
        last = self.batches[-1]
        assert last.head is not None
        if batch.number <= last.number:
            raise StepFailed(f"comes after batch {last.number}: batches are not in order")
        if head.prev_size != last.head.size:
            raise StepFailed(
                f"the system log was at size {head.prev_size} before it, but batch "
                f"{last.number} left it at {last.head.size}: a batch is missing"
            )
        if batch.number > self.end_batch:
            raise StepFailed(f"is after the end batch {self.end_batch}")

    def _anchors(self, anchors: Any, batch: _Batch) -> None:
        if not isinstance(anchors, list) or not anchors:
            self.unanchored.append(batch.number)
            return
        for position, anchor in enumerate(anchors):
            while len(self.anchors) <= position:
                self.anchors.append([])
            try:
                status, detail = anchor_check(
                    anchor,
                    checkpoint=batch.checkpoint,
                    keys=self.keys,
                    tsa_ca_pem=self.tsa_ca_pem,
                    nodes=self.nodes,
                )
            except (StepFailed, FormatError) as exc:
                status, detail = FAILED, str(exc)
            self.anchors[position].append((status, detail, batch.number))

    # --- entries -----------------------------------------------------------------------------

    def read_entry(self, line: dict[str, Any]) -> None:
        index = line.get("index")
        where = f"entry {index}"
        leaf_hash, leaf = self._leaf(line, where)
        self._place(line, index, where, leaf_hash)
        if leaf is not None:
            self._openings_and_facts(line, leaf, where)

    def _leaf(self, line: dict[str, Any], where: str) -> tuple[bytes, dict[str, Any] | None]:
        tally = self.tallies["leaf"]
        raw_b64 = line.get("canonical_b64")
        try:
            raw = binascii.a2b_base64(raw_b64 if isinstance(raw_b64, str) else "", strict_mode=True)
        except binascii.Error:
            raw = b""
        leaf_hash = merkle.leaf_hash(raw)
        try:
            if not raw:
                raise StepFailed("canonical_b64 is missing or not base64")
            leaf = _canonical_json(raw)
            if not isinstance(leaf, dict) or not json_same(leaf.get("v"), 1):
                raise StepFailed("not a version 1 Veridict leaf")
            if leaf.get("stream") != self.stream:
                raise StepFailed(
                    f"the leaf names stream {leaf.get('stream')!r}, not this system's "
                    f"{self.stream}: an entry of another system"
                )
            body = leaf.get("body")
            if not isinstance(body, dict):
                raise StepFailed("the leaf has no body")
            if "system" in body and body["system"] != self.slug:
                raise StepFailed(f"the leaf's body names system {body['system']!r}")
            for name in ("id", "kind", "received_at"):
                if not isinstance(leaf.get(name), str):
                    raise StepFailed(f"the leaf has no {name}")
            parse_time(leaf["received_at"])
        except (StepFailed, FormatError) as exc:
            tally.fail(where, str(exc))
            return leaf_hash, None
        tally.checked += 1
        return leaf_hash, leaf

    def _place(self, line: dict[str, Any], index: Any, where: str, leaf_hash: bytes) -> None:
        """Completeness: the entries are the system log's leaves a..b-1 in order; the leaves of
        each batch, appended to the compact range, give that batch header's stream root."""
        tally = self.tallies["completeness"]
        if not json_same(index, self.next_index):
            tally.fail(
                where,
                f"expected entry {self.next_index} here: entries are left out or out of order",
            )
        self.next_index += 1
        # Past the batches that end where the log already stands: the start batch, at size a.
        while (
            self.batch_position < len(self.batches)
            and self.batches[self.batch_position].head.size <= self.border_size  # type: ignore[union-attr]
        ):
            self.batch_position += 1
        if self.batch_position >= len(self.batches):
            tally.fail(where, f"no batch of the package covers leaf {self.next_index - 1}")
            return
        batch = self.batches[self.batch_position]
        assert batch.head is not None
        if not json_same(line.get("batch"), batch.number):
            tally.fail(
                where, f"names batch {line.get('batch')!r}, but batch {batch.number} seals it"
            )
        self.batch_leaves.append(leaf_hash)
        if self.border_size + len(self.batch_leaves) == batch.head.size:
            self._batch_close(batch)

    def _batch_close(self, batch: _Batch) -> None:
        assert batch.head is not None
        tally = self.tallies["completeness"]
        border = merkle.compact_range_extend(self.border_size, self.border, self.batch_leaves)
        root = merkle.fold_right(border) if border else merkle.EMPTY_ROOT
        if root != batch.head.root:
            tally.fail(
                f"batch {batch.number}",
                f"the compact range at {self.border_size} and the package's "
                f"{len(self.batch_leaves)} leaves do not give the system log's root at "
                f"{batch.head.size} that the header lists",
            )
        else:
            tally.checked += 1
        self.border, self.border_size = border, batch.head.size
        self.batch_leaves = []
        self.batch_position += 1

    def _openings_and_facts(self, line: dict[str, Any], leaf: dict[str, Any], where: str) -> None:
        tally = self.tallies["openings"]
        body: dict[str, Any] = leaf["body"]
        kind = leaf["kind"]
        self.kinds[kind] += 1
        erased = line.get("erased") is True
        openings = line.get("openings") or {}
        opened: dict[str, Any] = {}
        try:
            if not isinstance(openings, dict):
                raise StepFailed("openings is not an object")
            if erased and (kind != "decision" or openings):
                raise StepFailed("only a decision is erased, and an erased one has no openings")
            for name, opening in openings.items():
                commitment = _commitment_of(body, name)
                if commitment is None:
                    raise StepFailed(f"opens {name}, which the leaf commits to nothing for")
                try:
                    opened[name] = _opening_check(commitment, opening)
                except StepFailed as exc:
                    raise StepFailed(f"{name}: {exc}") from exc
                self.openings_checked[name] += 1
            commitments = body.get("commitments")
            if kind == "decision" and not erased and isinstance(commitments, dict):
                missing = [n for n in REQUIRED_OPENINGS if n in commitments and n not in opened]
                if missing:
                    raise StepFailed(
                        f"the decision commits to {', '.join(missing)} but is not opened"
                    )
        except StepFailed as exc:
            tally.fail(where, str(exc))
        else:
            tally.checked += 1
        self._facts(line, leaf, body, kind, opened, erased)

    def _facts(
        self,
        line: dict[str, Any],
        leaf: dict[str, Any],
        body: dict[str, Any],
        kind: str,
        opened: dict[str, Any],
        erased: bool,
    ) -> None:
        entry_id: str = leaf["id"]
        decision_id = body.get("decision")
        facts = self.oversight
        if kind == "decision":
            self.erased += erased
            found = body.get("commitments")
            commitments: dict[str, Any] = found if isinstance(found, dict) else {}
            attribution = body.get("attribution")
            owner = (
                "opened"
                if "owner" in opened
                else "committed"
                if "owner" in commitments
                else "system_default"
                if isinstance(attribution, dict) and attribution.get("owner")
                else ""
            )
            attributes = opened.get("protected_attributes")
            try:
                record = bias.record_from_leaves(
                    decision=body, protected_attributes=self._shared(attributes)
                )
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                self.tallies["leaf"].fail(f"entry {self.next_index - 1}", f"not a decision: {exc}")
                return
            self.decisions[entry_id] = DecisionFacts(
                entry_id=entry_id,
                index=self.next_index - 1,
                received_at=leaf["received_at"],
                record=record,
                threshold=body.get("threshold"),
                solely_automated=body.get("solely_automated") is True,
                supersedes=body.get("supersedes")
                if isinstance(body.get("supersedes"), str)
                else None,
                owner=owner,
                erased=erased,
                review=line.get("review"),
            )
        elif not isinstance(decision_id, str):
            return
        elif kind == "outcome":
            actual = body.get("actual")
            facts.actuals[decision_id] = bias.label_from_output(
                actual if isinstance(actual, dict) else None
            )
        elif kind == "attribution":
            facts.attributed.add(decision_id)
        elif kind == "contest":
            facts.contests.append((decision_id, leaf["received_at"], self.next_index - 1))
        elif kind == "review" and review_final(body):
            facts.finals[decision_id].append(leaf["received_at"])
            facts.final_outputs[decision_id] = body.get("output")

    def _shared(self, attributes: Any) -> Any:
        """One object for equal attribute sets: 100,000 decisions have a handful of them."""
        if not isinstance(attributes, dict) or not all(
            isinstance(value, str | int | float | bool | None) for value in attributes.values()
        ):
            return attributes
        return self.attribute_sets.setdefault(tuple(sorted(attributes.items())), attributes)


# --- The steps ------------------------------------------------------------------------------


def package_audit(
    path: Path,
    *,
    keys: list[VerifierKey],
    tsa_ca_pem: bytes | None = None,
    rpc_urls: Sequence[str] = (),
    compare: Mapping[str, Any] | None = None,
) -> AuditResult:
    """Checks the package at `path`; PackageUnreadable when not even its header can be read."""
    audit = _Audit(keys, tsa_ca_pem, [RPCNode(url) for url in rpc_urls])
    lines = package_lines(path)
    first = next(lines, None)
    if first is None:
        raise PackageUnreadable(f"{path} holds no line")
    audit.read_header(first)
    audit.lines = 1
    unreadable = None
    try:
        for line in lines:
            if audit.ended is not None:
                audit.tallies["completeness"].fail("end", "lines follow the end line")
                break
            kind = line["type"]
            if kind != "end":
                audit.lines += 1
            if audit.header_error is not None:
                continue
            if kind == "batch":
                if audit.next_index != audit.start_size:
                    audit.tallies["batch_header"].fail("batch", "a batch line after the entries")
                audit.read_batch(line)
            elif kind == "entry":
                audit.read_entry(line)
            elif kind == "end":
                audit.ended = line
                continue  # `lines` counts the lines before the end line
            else:
                audit.tallies["completeness"].fail(f"line {audit.lines}", f"unknown type {kind!r}")
    except PackageUnreadable as exc:
        unreadable = str(exc)
    return _result(audit, unreadable, compare)


def _result(
    audit: _Audit, unreadable: str | None, compare: Mapping[str, Any] | None
) -> AuditResult:
    report = Report()
    facts: dict[str, Any] = {}
    tallies = audit.tallies
    header = audit.header
    found = header.get("system")
    system: dict[str, Any] = found if isinstance(found, dict) else {}
    report.steps.append(
        tallies["header"].step(
            "header",
            f"{EVIDENCE_VERSION} of system {audit.slug} (log {audit.stream}), "
            f"system log from size {audit.start_size} to {audit.end_size}",
        )
    )
    if audit.header_error is not None:
        return AuditResult(report, facts)
    batches = audit.batches
    numbers = f"{batches[0].number}..{batches[-1].number}" if batches else "none"
    report.steps.append(
        tallies["checkpoint_signature"].step(
            "checkpoint_signature",
            f"{len(batches)} checkpoints (batches {numbers}) signed by pinned keys of "
            f"{header.get('origin')}",
        )
    )
    ending = batches[-1] if batches else None
    if not tallies["batch_header"].failed and (
        ending is None
        or ending.number != audit.end_batch
        or ending.head is None
        or ending.head.size != audit.end_size
    ):
        tallies["batch_header"].fail(
            "end",
            f"the last batch is not the end batch {audit.end_batch} at size {audit.end_size}",
        )
    report.steps.append(
        tallies["batch_header"].step(
            "batch_header",
            f"{len(batches)} headers bound to their checkpoints; the system log's size runs "
            f"from {audit.start_size} to {audit.end_size} without a gap",
        )
    )
    report.steps.extend(_anchor_steps(audit))
    _end_check(audit, unreadable)
    entries = audit.end_size - audit.start_size
    report.steps.append(
        tallies["leaf"].step(
            "leaf",
            f"{tallies['leaf'].checked} leaves hashed; every one names stream {audit.stream}",
        )
    )
    report.steps.append(
        tallies["completeness"].step(
            "completeness",
            f"the compact range at {audit.start_size} and the {entries} leaves give the system "
            f"log's root after each of the {len(batches)} batches, up to size {audit.end_size}",
        )
    )
    opened = ", ".join(f"{name} {count}" for name, count in sorted(audit.openings_checked.items()))
    report.steps.append(
        tallies["openings"].step(
            "openings",
            f"{sum(audit.openings_checked.values())} openings match their commitments "
            f"({opened or 'none'}); {audit.erased} erased decisions have none",
        )
    )
    first_anchor = next(
        (detail for statuses in audit.anchors for status, detail, _ in statuses if status == OK),
        None,
    )
    facts["package"] = {
        "system": {"slug": audit.slug, "name": system.get("name"), "stream": audit.stream},
        "origin": header.get("origin"),
        "range": header.get("range"),
        "start": {"batch": audit.start_batch, "size": audit.start_size},
        "end": {"batch": audit.end_batch, "size": audit.end_size},
        "batches": [batch.number for batch in batches],
        "entries": entries,
        "kinds": dict(sorted(audit.kinds.items())),
        "decisions": len(audit.decisions),
        "erased": audit.erased,
        "anchored_by": first_anchor,
    }
    trusted = not report.failed
    records, excluded = _records(audit)
    if not trusted:
        reason = "a ledger step failed, so the leaves these figures rest on are not verified"
        report.steps.append(Step("bias", SKIPPED, reason))
        report.steps.append(Step("oversight", SKIPPED, reason))
        return AuditResult(report, facts)
    bias_step, facts["bias"] = _bias(audit, records, excluded, compare)
    report.steps.append(bias_step)
    oversight_steps, facts["oversight"] = oversight_check(
        decisions=audit.decisions,
        facts=audit.oversight,
        last_seal=max((parse_time(batch.sealed_at) for batch in audit.batches), default=None),
    )
    report.steps.extend(oversight_steps)
    return AuditResult(report, facts)


def _end_check(audit: _Audit, unreadable: str | None) -> None:
    tally = audit.tallies["completeness"]
    if unreadable is not None:
        tally.fail(f"after line {audit.lines}", f"the package is cut short: {unreadable}")
        return
    if audit.ended is None:
        tally.fail("end", "the package has no end line: it is cut short")
        return
    entries = audit.end_size - audit.start_size
    seen = audit.next_index - audit.start_size
    if seen != entries:
        tally.fail("end", f"the package holds {seen} entries, the range {entries}")
    elif audit.batch_leaves or audit.border_size != audit.end_size:
        tally.fail("end", "the last batch's leaves are not all in the package")
    expected = {"entries": entries, "erased": audit.erased, "lines": audit.lines}
    for name, value in expected.items():
        if not json_same(audit.ended.get(name), value):
            tally.fail(
                "end",
                f"the end line says {name} {audit.ended.get(name)!r}, the package has {value}",
            )


def _anchor_steps(audit: _Audit) -> list[Step]:
    """anchor[i]: the i-th anchor of every batch, one step per position."""
    steps = []
    for position, results in enumerate(audit.anchors):
        failed = [(detail, number) for status, detail, number in results if status == FAILED]
        skipped = [detail for status, detail, _ in results if status == SKIPPED]
        name = f"anchor[{position}]"
        if failed:
            detail, number = failed[0]
            steps.append(Step(name, FAILED, f"batch {number}: {detail} ({len(failed)} failed)"))
        elif skipped:
            steps.append(Step(name, SKIPPED, f"{len(results)} batches: {skipped[-1]}"))
        else:
            steps.append(Step(name, OK, f"{len(results)} batches; the last: {results[-1][1]}"))
    if audit.unanchored:
        listed = ", ".join(str(number) for number in audit.unanchored[:FAILURES_SHOWN])
        steps.append(
            Step(
                f"anchor[{len(audit.anchors)}]" if not audit.anchors else "anchor[0]",
                PENDING,
                f"batches {listed} carry no anchor yet: fetch the package again later",
            )
        )
    return steps


# --- Bias -----------------------------------------------------------------------------------


def _records(audit: _Audit) -> tuple[list[bias.DecisionRecord], int]:
    """The bias records of the decisions that count (a corrected decision does not: its
    correction does), and how many of those are erased and cannot be opened."""
    superseded = {d.supersedes for d in audit.decisions.values() if d.supersedes}
    facts = audit.oversight
    records, excluded = [], 0
    for decision in audit.decisions.values():
        if decision.entry_id in superseded:
            continue
        if decision.erased:
            excluded += 1
            continue
        record = decision.record
        if decision.entry_id in facts.final_outputs:
            output = facts.final_outputs[decision.entry_id]
            # A confirmation's entry carries no output: the decision's own is final.
            final = (
                record.predicted
                if output is None
                else bias.label_from_output(output, decision.threshold)
            )
            record = dataclasses.replace(record, final=final)
        if decision.entry_id in facts.actuals:
            record = dataclasses.replace(record, actual=facts.actuals[decision.entry_id])
        records.append(record)
    return records, excluded


_COMPARED_PARAMETERS = ("attributes", "outcome", "public", "min_cell")


def _bias(
    audit: _Audit,
    records: list[bias.DecisionRecord],
    excluded: int,
    compare: Mapping[str, Any] | None,
) -> tuple[Step, dict[str, Any]]:
    erased_note = (
        f"; {excluded} decisions of erased subjects cannot be opened and are left out"
        " (the server's counts keep them)"
        if excluded
        else ""
    )
    facts: dict[str, Any] = {"excluded_erased": excluded, "records": len(records)}
    parameters = _report_parameters(records, compare)
    if parameters is None:
        return Step("bias", SKIPPED, "no opened decision reports protected attributes"), facts
    system = audit.header.get("system") or {}
    try:
        ours = bias.bias_report_recompute(
            records=records,
            system=audit.slug,
            system_name=str(system.get("name", "")),
            **parameters,
        )
    except (bias.RecomputeError, ValueError) as exc:
        return Step("bias", FAILED, f"the report cannot be recomputed: {exc}"), facts
    facts["report"] = ours
    summary = ours["summary"]
    text = (
        f"recomputed from {ours['total']} opened decisions over {', '.join(ours['attributes'])}: "
        f"lowest impact ratio {_figure(summary.get('min_impact_ratio'))} "
        f"({summary.get('min_impact_group')}), four-fifths violations "
        f"{summary.get('four_fifths_violations') or 'none'}{erased_note}"
    )
    if compare is None:
        return Step("bias", OK, text), facts
    try:
        # Both in their RFC 8785 form: a published audit stores its report's canonical bytes, in
        # which a rate of 1.0 is written 1, while the API writes 1.0.
        differences = bias.report_compare(_canonical_form(ours), _canonical_form(compare))
    except ValueError as exc:
        return Step("bias", FAILED, f"the compared report is not I-JSON: {exc}"), facts
    facts["differences"] = [
        {"path": d.path, "ours": d.ours, "theirs": d.theirs} for d in differences
    ]
    if not differences:
        return Step("bias", OK, f"{text}; equal to the compared report in every figure"), facts
    named = "; ".join(f"{d.path}: ours {d.ours!r}, theirs {d.theirs!r}" for d in differences[:20])
    more = f" and {len(differences) - 20} more" if len(differences) > 20 else ""
    because = ""
    if excluded:
        total = compare.get("total")
        gap = total - ours["total"] if isinstance(total, int) else None
        because = (
            f". The compared report counts {gap} more decisions; {excluded} decisions of erased "
            "subjects are in its counts but cannot be opened here, so figures that depend on them "
            "cannot be told apart from other differences"
        )
    return (
        Step(
            "bias",
            FAILED,
            f"{len(differences)} figures differ from the compared report: {named}{more}{because}",
        ),
        facts,
    )


def _canonical_form(report: Mapping[str, Any]) -> Any:
    return json.loads(canonical.dumps(report))


def _report_parameters(
    records: list[bias.DecisionRecord], compare: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The compared report's own parameters, so that the two are computed alike; without one,
    every attribute the opened decisions report, the largest group as reference."""
    if compare is None:
        names = sorted(
            {name for r in records for name, _ in bias.attributes_normalise(r.attributes)}
        )
        return {"attributes": names} if names else None
    reference = compare.get("reference") or {}
    mode = reference.get("mode") if isinstance(reference, dict) else None
    date_from, date_to = compare.get("date_from"), compare.get("date_to")
    return {
        "attributes": list(compare.get("attributes") or []),
        "reference": reference.get("group") if mode == "named" else mode,
        "model_version": compare.get("model_version"),
        "date_from": datetime.date.fromisoformat(date_from) if date_from else None,
        "date_to": datetime.date.fromisoformat(date_to) if date_to else None,
        "outcome": compare.get("outcome") or "ai",
        "public": compare.get("public") is True,
        "min_cell": compare.get("min_cell") or bias.DEFAULT_MIN_CELL,
        "favourable_labels": compare.get("favourable_labels") or (),
        "favourable_actual_labels": compare.get("favourable_actual_labels") or (),
    }


def _figure(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else "n/a"
