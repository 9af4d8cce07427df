"""Real receipts, valid and tampered one field at a time, with the verdict each must get.

`corpus_build(seal=...)` builds a ledger (several batches, built-in time-stamps, an outside RFC 3161
anchor over a later checkpoint) and returns `Case`s: every verifier of Veridict receipts, the
`veridict-verify` command and the browser's, must give each the same verdict and fail it at the same
step. Cases marked `informational` change a field that no step binds (docs/receipts.md): their
verdict stays the one of the receipt they were made from.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import rfc8785
from asn1crypto import tsp
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.test import override_settings
from veridict_verify import merkle
from veridict_verify.note import VerifierKey, note_sign

from timestamping import anchor_backends, keys, selectors, tsa
from timestamping.models import Batch, Entry
from timestamping.services import entry_append
from timestamping.services.anchoring import anchor_job_run, anchor_jobs_due

PEER = "peer"
PEER_URL = "http://127.0.0.1:9/tsr"  # never dialled: the peer's answers come from _post below

# The fields docs/receipts.md lists as informational: changing one leaves the verdict as it was.
INFORMATIONAL_FIELDS = (
    "log.origin",
    "log.verifier_key",
    "anchors[i].tsa",
    "anchors[i].confirmations",
    "anchor_status",
    "document.salt_b64",
)


@dataclass(frozen=True)
class Case:
    """One receipt and what a verifier must say of it, given the pins in `tsa_ca`."""

    name: str
    receipt: dict[str, Any]
    verdict: str  # "verified", "failed" or "pending"
    failing_step: str | None = None
    tsa_ca: str = "builtin"  # which CA is pinned: "builtin", "none" or "other"
    informational: str | None = None  # the INFORMATIONAL_FIELDS entry this case changes
    raw: str | None = None  # the JSON text, when json.dumps(receipt) would write it otherwise

    @property
    def text(self) -> str:
        """The receipt as a verifier reads it: JSON text (4.0, 4e0 and 4 differ only there)."""
        return self.raw if self.raw is not None else json.dumps(self.receipt)


@dataclass
class Corpus:
    cases: list[Case]
    verifier_key: str
    tsa_ca_pem: str
    other_ca_pem: str
    by_name: dict[str, Case] = field(init=False)

    def __post_init__(self) -> None:
        self.by_name = {case.name: case for case in self.cases}

    def tsa_ca_for(self, case: Case) -> str | None:
        return {"builtin": self.tsa_ca_pem, "none": None, "other": self.other_ca_pem}[case.tsa_ca]


# --- building the ledger ------------------------------------------------------------------------


@contextmanager
def _peer_backend(ca_file: Path) -> Iterator[None]:
    """An outside RFC 3161 backend answered by this instance's own TSA, in process (as one
    Veridict anchoring to another would be over HTTP)."""
    backend = {
        "name": PEER,
        "type": "rfc3161",
        "url": PEER_URL,
        "interval": 60,
        "roots": [str(ca_file)],
    }
    with (
        override_settings(ANCHOR_BACKENDS=[backend]),
        mock.patch.object(
            anchor_backends.RFC3161Backend, "_post", lambda self, query: tsa.tsa_respond(query)
        ),
    ):
        yield


def _append(count: int, batch: int) -> list[Entry]:
    return [entry_append(kind="test", envelope={"batch": batch, "n": n})[0] for n in range(count)]


def _other_ca_pem(folder: Path) -> str:
    tsa.tsa_create(
        key_file=folder / "key.pem",
        cert_file=folder / "cert.pem",
        ca_cert_file=folder / "ca.pem",
        common_name="Another TSA",
    )
    return (folder / "ca.pem").read_text()


# --- tampering helpers --------------------------------------------------------------------------


def _flip_hex(value: str, position: int = 0) -> str:
    digits = list(value)
    digits[position] = "0" if digits[position] != "0" else "1"
    return "".join(digits)


def _flip_b64(value: str, byte: int) -> str:
    raw = bytearray(base64.b64decode(value))
    raw[byte] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _note_parts(note: str) -> tuple[str, str]:
    cut = note.rfind("\n\n")
    return note[: cut + 1], note[cut + 1 :]


def _note_text_changed(note: str, change: Callable[[list[str]], None]) -> str:
    """The note with its text changed and its old signature kept (so it no longer verifies)."""
    text, signatures = _note_parts(note)
    lines = text.split("\n")
    change(lines)
    return "\n".join(lines) + signatures


def _note_signature_flipped(note: str) -> str:
    text, signatures = _note_parts(note)
    prefix, encoded = signatures.rstrip("\n").rsplit(" ", 1)
    return text + prefix + " " + _flip_b64(encoded, 10) + "\n"


def _header_changed(receipt: dict[str, Any], name: str, value: Any, rehash: bool) -> None:
    header = json.loads(base64.b64decode(receipt["batch"]["header_b64"]))
    header[name] = value
    raw = rfc8785.dumps(header)
    receipt["batch"]["header_b64"] = base64.b64encode(raw).decode()
    if rehash:
        receipt["batch"]["header_hash"] = hashlib.sha256(raw).hexdigest()


def _resigned_header(receipt: dict[str, Any], name: str, value: Any) -> None:
    """A header changed and signed again by the log's own key, as only the operator could: the
    batch header step holds, so what the header says of streams is all that stands between."""
    _header_changed(receipt, name, value, rehash=True)
    text, _ = _note_parts(receipt["checkpoint"])
    lines = text.split("\n")
    lines[3] = f"veridict-batch {receipt['batch']['number']} {receipt['batch']['header_hash']}"
    receipt["checkpoint"] = keys.sign("\n".join(lines))


def _leaf_changed(receipt: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> None:
    """New canonical bytes and their leaf hash: the leaf step holds, the SET no longer does."""
    leaf = json.loads(base64.b64decode(receipt["entry"]["canonical_b64"]))
    change(leaf)
    raw = rfc8785.dumps(leaf)
    receipt["entry"]["canonical_b64"] = base64.b64encode(raw).decode()
    receipt["entry"]["leaf_hash"] = merkle.leaf_hash(raw).hex()
    for name in ("id", "kind", "received_at"):
        receipt["entry"][name] = leaf[name]


def _later(moment: str, seconds: int) -> str:
    parsed = datetime.strptime(moment, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (parsed + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the corpus ---------------------------------------------------------------------------------


def _tampered(base: dict[str, Any], later_checkpoint: str, other_set: str) -> list[Case]:
    """Every field of every layer of `base` (an entry of batch 2 with two anchors: the built-in
    stamp of its own checkpoint, the peer's of batch 3's) changed in turn."""
    cases: list[Case] = []

    def case(name: str, step: str, change: Callable[[dict[str, Any]], None], **kw: Any) -> None:
        receipt = copy.deepcopy(base)
        change(receipt)
        cases.append(Case(name=name, receipt=receipt, verdict="failed", failing_step=step, **kw))

    def put(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
        def change(receipt: dict[str, Any]) -> None:
            *parents, last = path.split(".")
            target: Any = receipt
            for part in parents:
                target = target[int(part)] if isinstance(target, list) else target[part]
            if isinstance(target, list):
                target[int(last)] = value
            else:
                target[last] = value

        return change

    entry = base["entry"]
    # The envelope: the receipt itself.
    case("version changed", "leaf", put("version", "veridict.receipt/v2"))
    case("entry missing", "leaf", lambda r: r.pop("entry"))
    case("entry not an object", "leaf", put("entry", ["x"]))
    # The leaf.
    case("entry.id changed", "leaf", put("entry.id", str(uuid.uuid4())))
    case("entry.kind changed", "leaf", put("entry.kind", "decision"))
    case(
        "entry.received_at changed",
        "leaf",
        put("entry.received_at", _later(entry["received_at"], 1)),
    )
    case("entry.leaf_hash changed", "leaf", put("entry.leaf_hash", _flip_hex(entry["leaf_hash"])))
    case("entry.leaf_hash upper case", "set", put("entry.leaf_hash", entry["leaf_hash"].upper()))
    case(
        "entry.canonical_b64 byte changed",
        "leaf",
        put("entry.canonical_b64", _flip_b64(entry["canonical_b64"], 20)),
    )
    case("entry.canonical_b64 not base64", "leaf", put("entry.canonical_b64", "not base64!"))
    case(
        "entry.canonical_b64 repeats a key",
        "leaf",
        lambda r: _raw_leaf(r, base64.b64decode(entry["canonical_b64"])[:-1] + b',"v":1}'),
    )
    case(
        "leaf body changed, leaf hash recomputed", "set", lambda r: _leaf_changed(r, _body_changed)
    )
    case(
        "leaf id changed, leaf hash recomputed",
        "set",
        lambda r: _leaf_changed(r, lambda leaf: leaf.update(id=str(uuid.uuid4()))),
    )
    # The SET.
    case("set signature changed", "set", put("set", _note_signature_flipped(base["set"])))
    case(
        "set mmd changed",
        "set",
        put("set", _note_text_changed(base["set"], lambda lines: lines.__setitem__(4, "86400"))),
    )
    case("set signed by an unpinned key", "set", put("set", other_set))
    case("set missing", "set", put("set", None))
    # The inclusion proof.
    proof = base["proof"]
    case("proof.leaf_index plus one", "inclusion", put("proof.leaf_index", proof["leaf_index"] + 1))
    case(
        "proof.leaf_index minus one", "inclusion", put("proof.leaf_index", proof["leaf_index"] - 1)
    )
    case("proof.leaf_index not a number", "inclusion", put("proof.leaf_index", "4"))
    case("proof.tree_size plus one", "inclusion", put("proof.tree_size", proof["tree_size"] + 1))
    for i, step in enumerate(proof["inclusion"]):
        case(
            f"proof.inclusion[{i}] changed",
            "inclusion",
            put(f"proof.inclusion.{i}", _flip_hex(step, 5)),
        )
    case(
        "proof.inclusion one hash short",
        "inclusion",
        put("proof.inclusion", proof["inclusion"][:-1]),
    )
    case(
        "proof.inclusion one hash too many",
        "inclusion",
        put("proof.inclusion", [*proof["inclusion"], "00" * 32]),
    )
    case("proof.inclusion reversed", "inclusion", put("proof.inclusion", proof["inclusion"][::-1]))
    case("proof not an object", "inclusion", put("proof", []))
    # The checkpoint.
    checkpoint = base["checkpoint"]
    other_root = base64.b64encode(hashlib.sha256(b"another root").digest()).decode()
    case(
        "checkpoint root changed",
        "inclusion",
        put(
            "checkpoint",
            _note_text_changed(checkpoint, lambda lines: lines.__setitem__(2, other_root)),
        ),
    )
    case(
        "checkpoint size changed",
        "inclusion",
        put(
            "checkpoint",
            _note_text_changed(
                checkpoint, lambda lines: lines.__setitem__(1, str(proof["tree_size"] + 1))
            ),
        ),
    )
    case("checkpoint replaced by a later one", "inclusion", put("checkpoint", later_checkpoint))
    case(
        "checkpoint signature changed",
        "checkpoint_signature",
        put("checkpoint", _note_signature_flipped(checkpoint)),
    )
    case(
        "checkpoint batch line changed",
        "checkpoint_signature",
        put(
            "checkpoint",
            _note_text_changed(
                checkpoint, lambda lines: lines.__setitem__(3, f"veridict-batch 9 {'ab' * 32}")
            ),
        ),
    )
    case(
        "checkpoint origin changed",
        "checkpoint_signature",
        put(
            "checkpoint",
            _note_text_changed(checkpoint, lambda lines: lines.__setitem__(0, "other.example/log")),
        ),
    )
    # The batch header.
    batch = base["batch"]
    header = json.loads(base64.b64decode(batch["header_b64"]))
    case("batch.number changed", "batch_header", put("batch.number", batch["number"] + 1))
    case(
        "batch.header_hash changed",
        "batch_header",
        put("batch.header_hash", _flip_hex(batch["header_hash"])),
    )
    case(
        "batch.header_b64 byte changed",
        "batch_header",
        put("batch.header_b64", _flip_b64(batch["header_b64"], 5)),
    )
    case("batch not an object", "batch_header", put("batch", None))
    changed_values: dict[str, Any] = {
        "v": 2,
        "origin": "other.example/log",
        "number": header["number"] + 1,
        "prev_header_hash": _flip_hex(header["prev_header_hash"]),
        "prev_tree_size": header["prev_tree_size"] + 1,
        "prev_root": _flip_hex(header["prev_root"]),
        "tree_size": header["tree_size"] + 1,
        "root": _flip_hex(header["root"]),
        "consistency": [_flip_hex(step) for step in header["consistency"]],
        "sealed_at": _later(header["sealed_at"], 3600),
    }
    for name, value in changed_values.items():
        case(
            f"batch header {name} changed",
            "batch_header",
            lambda r, n=name, v=value: _header_changed(r, n, v, rehash=False),
        )
        case(
            f"batch header {name} changed, header_hash recomputed",
            "batch_header",
            lambda r, n=name, v=value: _header_changed(r, n, v, rehash=True),
        )
    # The anchors: the built-in stamp of the entry's own checkpoint, then the peer's of a later one.
    builtin, peer = base["anchors"]
    case("anchors not a list", "anchor[0]", put("anchors", {"0": builtin}))
    case("anchor[0] not an object", "anchor[0]", put("anchors.0", "builtin"))
    case("anchor[0].type unknown", "anchor[0]", put("anchors.0.type", "opentimestamps"))
    case(
        "anchor[0].tsr_b64 signature byte changed",
        "anchor[0]",
        put("anchors.0.tsr_b64", _flip_b64(builtin["tsr_b64"], -10)),
    )
    case(
        "anchor[0].tsr_b64 imprint byte changed",
        "anchor[0]",
        put("anchors.0.tsr_b64", _tsr_imprint_flipped(builtin["tsr_b64"])),
    )
    case(
        "anchor[0].tsr_b64 truncated",
        "anchor[0]",
        put(
            "anchors.0.tsr_b64",
            base64.b64encode(base64.b64decode(builtin["tsr_b64"])[:200]).decode(),
        ),
    )
    case("anchor[0].tsr_b64 not base64", "anchor[0]", put("anchors.0.tsr_b64", "%%%"))
    case(
        "anchor[0].tsr_b64 of another checkpoint",
        "anchor[0]",
        put("anchors.0.tsr_b64", peer["tsr_b64"]),
    )
    case(
        "anchor[0].checkpoint signature changed",
        "anchor[0]",
        put("anchors.0.checkpoint", _note_signature_flipped(builtin["checkpoint"])),
    )
    case(
        "anchor[0].checkpoint replaced by a later one",
        "anchor[0]",
        put("anchors.0.checkpoint", later_checkpoint),
    )
    case("anchor[0].consistency not empty", "anchor[0]", put("anchors.0.consistency", ["00" * 32]))
    case("anchor[0] pinned to another TSA CA", "anchor[0]", lambda r: None, tsa_ca="other")
    for i, step in enumerate(peer["consistency"]):
        case(
            f"anchor[1].consistency[{i}] changed",
            "anchor[1]",
            put(f"anchors.1.consistency.{i}", _flip_hex(step, 7)),
        )
    case(
        "anchor[1].consistency one hash short",
        "anchor[1]",
        put("anchors.1.consistency", peer["consistency"][:-1]),
    )
    case("anchor[1].consistency empty", "anchor[1]", put("anchors.1.consistency", []))
    case(
        "anchor[1].checkpoint is the entry's own",
        "anchor[1]",
        put("anchors.1.checkpoint", checkpoint),
    )
    case(
        "anchor[1].tsr_b64 of another checkpoint",
        "anchor[1]",
        put("anchors.1.tsr_b64", builtin["tsr_b64"]),
    )
    case(
        "anchor[1].checkpoint size changed",
        "anchor[1]",
        put(
            "anchors.1.checkpoint",
            _note_text_changed(peer["checkpoint"], lambda lines: lines.__setitem__(1, "99")),
        ),
    )
    return cases


def _stream_tampered(in_stream: dict[str, Any], plain: dict[str, Any]) -> list[Case]:
    """The stream proof of an entry of a stream (`in_stream`) changed in turn; and a stream
    proof added to the receipt of an entry of no stream (`plain`)."""
    cases: list[Case] = []

    def case(name: str, step: str, change: Callable[[dict[str, Any]], None], source=in_stream):
        receipt = copy.deepcopy(source)
        change(receipt)
        cases.append(Case(name=name, receipt=receipt, verdict="failed", failing_step=step))

    stream = in_stream["stream"]
    for i, step in enumerate(stream["inclusion"]):
        case(
            f"stream.inclusion[{i}] changed",
            "stream_inclusion",
            lambda r, i=i, step=step: r["stream"]["inclusion"].__setitem__(i, _flip_hex(step, 3)),
        )
    case(
        "stream.inclusion one hash short",
        "stream_inclusion",
        lambda r: r["stream"].update(inclusion=stream["inclusion"][:-1]),
    )
    case(
        "stream.inclusion one hash too many",
        "stream_inclusion",
        lambda r: r["stream"].update(inclusion=[*stream["inclusion"], "00" * 32]),
    )
    case(
        "stream.leaf_index minus one",
        "stream_inclusion",
        lambda r: r["stream"].update(leaf_index=stream["leaf_index"] - 1),
    )
    case(
        "stream.leaf_index as a float",
        "stream_inclusion",
        lambda r: r["stream"].update(leaf_index=float(stream["leaf_index"])),
    )
    case(
        "stream.tree_size plus one",
        "stream_inclusion",
        lambda r: r["stream"].update(tree_size=stream["tree_size"] + 1),
    )
    case("stream.id changed", "stream_inclusion", lambda r: r["stream"].update(id="s2"))
    case(
        "stream null on a sealed entry of a stream",
        "stream_inclusion",
        lambda r: r.update(stream=None),
    )
    case("stream missing on an entry of a stream", "stream_inclusion", lambda r: r.pop("stream"))
    case("stream not an object", "stream_inclusion", lambda r: r.update(stream=[stream]))
    case(
        "stream proof on an entry of no stream",
        "stream_inclusion",
        lambda r: r.update(stream=copy.deepcopy(stream)),
        source=plain,
    )
    header = json.loads(base64.b64decode(in_stream["batch"]["header_b64"]))
    changed_streams = copy.deepcopy(header["streams"])
    changed_streams[0]["root"] = _flip_hex(changed_streams[0]["root"])
    case(
        "batch header stream root changed, header_hash recomputed",
        "batch_header",
        lambda r: _header_changed(r, "streams", changed_streams, rehash=True),
    )
    case(
        "batch header stream root changed, checkpoint signed again by the log key",
        "stream_inclusion",
        lambda r: _resigned_header(r, "streams", changed_streams),
    )
    case(
        "batch header without streams, checkpoint signed again by the log key",
        "stream_inclusion",
        lambda r: _resigned_header(r, "v", 1),
    )
    case(
        "leaf stream changed, leaf hash recomputed",
        "set",
        lambda r: _leaf_changed(r, lambda leaf: leaf.update(stream="s2")),
    )
    return cases


def _raw_leaf(receipt: dict[str, Any], raw: bytes) -> None:
    receipt["entry"]["canonical_b64"] = base64.b64encode(raw).decode()
    receipt["entry"]["leaf_hash"] = merkle.leaf_hash(raw).hex()


def _body_changed(leaf: dict[str, Any]) -> None:
    leaf["body"] = {**leaf["body"], "n": leaf["body"]["n"] + 100}


def _tsr_imprint_flipped(tsr_b64: str) -> str:
    """The TimeStampResp with one bit of its message imprint changed (inside the signed TSTInfo)."""
    raw = bytearray(base64.b64decode(tsr_b64))
    imprint = (
        tsp.TimeStampResp.load(bytes(raw))["time_stamp_token"]["content"]["encap_content_info"][
            "content"
        ]
        .parsed["message_imprint"]["hashed_message"]
        .native
    )
    at = bytes(raw).index(imprint)
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def _informational(base: dict[str, Any], ethereum: dict[str, Any]) -> list[Case]:
    cases: list[Case] = []

    def case(
        name: str,
        what: str,
        change: Callable[[dict[str, Any]], None],
        source: dict[str, Any] = base,
    ) -> None:
        receipt = copy.deepcopy(source)
        change(receipt)
        cases.append(Case(name=name, receipt=receipt, verdict="verified", informational=what))

    other_key = str(_other_key_verifier())
    case("log.origin changed", "log.origin", lambda r: r["log"].update(origin="other.example/log"))
    case(
        "log.verifier_key changed",
        "log.verifier_key",
        lambda r: r["log"].update(verifier_key=other_key),
    )
    case(
        "anchors[0].tsa changed",
        "anchors[i].tsa",
        lambda r: r["anchors"][0].update(tsa="https://tsa.example/"),
    )
    case(
        "anchors[1].tsa changed", "anchors[i].tsa", lambda r: r["anchors"][1].update(tsa="builtin")
    )
    case(
        "anchor_status changed",
        "anchor_status",
        lambda r: r.update(anchor_status=[{"backend": "builtin", "status": "failed"}]),
    )
    case(
        "document.salt_b64 added",
        "document.salt_b64",
        lambda r: r.update(document={"salt_b64": base64.b64encode(b"\x00" * 32).decode()}),
    )
    case(
        "anchors[i].confirmations changed",
        "anchors[i].confirmations",
        lambda r: r["anchors"][-1].update(confirmations=999),
        source=ethereum,
    )
    return cases


def _other_key_verifier() -> VerifierKey:
    return VerifierKey.from_public_key(
        settings.LOG_ORIGIN, Ed25519PrivateKey.generate().public_key()
    )


def _ethereum_claim(base: dict[str, Any], peer: dict[str, Any]) -> dict[str, Any]:
    """`base` with an ethereum anchor over the peer-anchored checkpoint appended. Its chain fields
    are a claim no verifier can check without a node of the chain: without one the step is
    skipped, after the checkpoint, the consistency and the fields' form are checked."""
    receipt = copy.deepcopy(base)
    receipt["anchors"].append(
        {
            "type": "ethereum",
            "checkpoint": peer["checkpoint"],
            "consistency": list(peer["consistency"]),
            "chain_id": 31337,
            "tx_hash": "0x" + "1f" * 32,
            "block_number": 12,
            "block_hash": "0x" + "2e" * 32,
            "block_time": "2026-11-26T12:00:00.000000Z",
            "confirmations": 3,
        }
    )
    return receipt


def _integers_written_otherwise(
    base: dict[str, Any], first_leaf: dict[str, Any], with_ethereum: dict[str, Any]
) -> list[Case]:
    """Integers written as floats (4.0, 4e0) or as booleans: JSON.parse reads 4.0 as 4 and Python
    takes True for 1, so without one rule the two verifiers would disagree on these."""
    index, size = base["proof"]["leaf_index"], base["proof"]["tree_size"]
    assert first_leaf["proof"]["leaf_index"] == 0 and first_leaf["batch"]["number"] == 1
    position = len(with_ethereum["anchors"]) - 1
    cases = []

    def case(name: str, step: str, receipt: dict[str, Any], path: str, value: Any) -> None:
        changed = copy.deepcopy(receipt)
        *parents, last = path.split(".")
        target: Any = changed
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value
        cases.append(Case(name=name, receipt=changed, verdict="failed", failing_step=step))

    case(f"proof.leaf_index as {float(index)}", "inclusion", base, "proof.leaf_index", float(index))
    case(f"proof.tree_size as {float(size)}", "inclusion", base, "proof.tree_size", float(size))
    case("proof.leaf_index false on leaf 0", "inclusion", first_leaf, "proof.leaf_index", False)
    case("batch.number true on batch 1", "batch_header", first_leaf, "batch.number", True)
    number = float(base["batch"]["number"])
    case(f"batch.number as {number}", "batch_header", base, "batch.number", number)
    anchor = f"anchors.{position}"
    for name in ("chain_id", "block_number"):
        value = with_ethereum["anchors"][position][name]
        case(
            f"anchor[{position}].{name} as a float (ethereum)",
            f"anchor[{position}]",
            with_ethereum,
            f"{anchor}.{name}",
            float(value),
        )
    # 4e0: the same float to Python's json, a different text to the browser's parser.
    text = json.dumps(cases[0].receipt)
    written = f'"leaf_index": {float(index)!r}'
    assert text.count(written) == 1, written
    raw = text.replace(written, f'"leaf_index": {index}e0')
    cases.append(
        Case(
            name=f"proof.leaf_index as {index}e0",
            receipt=json.loads(raw),
            verdict="failed",
            failing_step="inclusion",
            raw=raw,
        )
    )
    return cases


def _ethereum_tampered(receipt: dict[str, Any]) -> list[Case]:
    cases = []
    position = len(receipt["anchors"]) - 1
    for name, value in (
        ("chain_id", "31337"),
        ("tx_hash", "0x" + "1F" * 32),
        ("block_number", -1),
        ("block_hash", "2e" * 32),
        ("block_time", "2026-11-26T12:00:00Z"),
    ):
        changed = copy.deepcopy(receipt)
        changed["anchors"][position][name] = value
        cases.append(
            Case(
                name=f"anchor[{position}].{name} malformed (ethereum)",
                receipt=changed,
                verdict="failed",
                failing_step=f"anchor[{position}]",
            )
        )
    changed = copy.deepcopy(receipt)
    changed["anchors"][position]["consistency"] = []
    cases.append(
        Case(
            name=f"anchor[{position}].consistency empty (ethereum)",
            receipt=changed,
            verdict="failed",
            failing_step=f"anchor[{position}]",
        )
    )
    return cases


def corpus_build(*, seal: Callable[[], Any], folder: Path) -> Corpus:
    """Builds the ledger in the current test database and returns the corpus of its receipts.

    `seal` runs batch_seal with its after-commit built-in stamp (the `seal` fixture, or
    batch_seal itself in a transactional test); `folder` takes another TSA's files.
    """
    ca_file = Path(settings.TSA_CA_CERT_FILE)
    with _peer_backend(ca_file):
        first = _append(3, batch=1)
        seal()
        second = _append(4, batch=2)
        seal()
        third = _append(2, batch=3)
        seal()
        (job,) = anchor_jobs_due(now=datetime.now(UTC))
        anchored = anchor_job_run(job_id=job.pk, now=datetime.now(UTC))
        assert anchored is not None and anchored.status == "final", anchored
        fourth = _append(1, batch=4)
        # Entries of two streams (system logs) in batch 4: its header is version 2; the batches
        # before keep version 1 headers and receipts without a stream, as before streams.
        streamed = [
            entry_append(kind="test", envelope={"batch": 4, "n": 10 + n}, stream=stream)[0]
            for n, stream in enumerate(["s1", "s2", "s1"])
        ]
        seal()
        (pending,) = _append(1, batch=5)
        pending_streamed, _ = entry_append(kind="test", envelope={"batch": 5}, stream="s1")

        def receipt(entry: Entry) -> dict[str, Any]:
            # Through JSON, as a verifier receives it.
            return json.loads(json.dumps(selectors.receipt_get(entry=entry)))

        base = receipt(second[1])
        assert [anchor["tsa"] for anchor in base["anchors"]] == ["builtin", PEER_URL], base
        later_checkpoint = Batch.objects.get(number=3).checkpoint
        other_set = note_sign(
            _note_parts(base["set"])[0], settings.LOG_ORIGIN, Ed25519PrivateKey.generate()
        )
        with_ethereum = _ethereum_claim(base, base["anchors"][1])
        in_stream = receipt(streamed[2])
        assert in_stream["stream"]["leaf_index"] == 1, in_stream["stream"]
        cases = [
            Case("valid: batch 2 entry with two anchors", base, "verified"),
            Case("valid: first batch entry", receipt(first[0]), "verified"),
            Case("valid: first batch, last entry", receipt(first[2]), "verified"),
            Case("valid: batch 2, last entry", receipt(second[3]), "verified"),
            Case("valid: the peer-anchored batch", receipt(third[1]), "verified"),
            Case("valid: a batch after the peer's anchor", receipt(fourth[0]), "verified"),
            Case("valid: no TSA CA pinned, anchors skipped", base, "verified", tsa_ca="none"),
            Case("valid: an unchecked ethereum claim (skipped)", with_ethereum, "verified"),
            Case(
                "valid: fewer anchors claim less",
                {**copy.deepcopy(base), "anchors": base["anchors"][:1]},
                "verified",
            ),
            Case("valid: an entry of a stream", in_stream, "verified"),
            Case("valid: the first entry of a stream", receipt(streamed[0]), "verified"),
            Case("valid: the only entry of another stream", receipt(streamed[1]), "verified"),
            Case("pending: not sealed yet", receipt(pending), "pending"),
            Case(
                "pending: an entry of a stream not sealed yet", receipt(pending_streamed), "pending"
            ),
            *_stream_tampered(in_stream, base),
            *_tampered(base, later_checkpoint, other_set),
            *_ethereum_tampered(with_ethereum),
            *_integers_written_otherwise(base, receipt(first[0]), with_ethereum),
            *_informational(base, with_ethereum),
        ]
    return Corpus(
        cases=cases,
        verifier_key=str(keys.verifier_key()),
        tsa_ca_pem=ca_file.read_text(),
        other_ca_pem=_other_ca_pem(folder),
    )
