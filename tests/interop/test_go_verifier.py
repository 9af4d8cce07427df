"""Go's golang.org/x/mod/sumdb note and tlog packages check our checkpoints, SETs and proofs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from veridict_verify.note import note_sign, note_split

from tests.conftest import missing
from timestamping import keys, selectors
from timestamping.models import Batch, Entry
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

SOURCE = Path(__file__).parent / "go" / "verify.go"
# Debian's golang-golang-x-mod-dev installs the packages here, for GOPATH mode.
GOPATH = Path("/usr/share/gocode")
SUMDB = GOPATH / "src" / "golang.org" / "x" / "mod" / "sumdb"


def go_missing(reason: str) -> None:
    """Skips on a laptop without Go; fails under .ci/run, where Go is part of the machine."""
    missing(f"{reason}: apt-get install golang-go golang-golang-x-mod-dev")


@pytest.fixture(scope="session")
def go_verifier(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None:
        go_missing("the go command is not installed")
    if not (SUMDB / "note").is_dir() or not (SUMDB / "tlog").is_dir():
        go_missing(f"golang.org/x/mod/sumdb is not under {GOPATH}")
    folder = tmp_path_factory.mktemp("go")
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOFLAGS": ""}
    if not env.get("GOCACHE") and not env.get("HOME"):
        env["GOCACHE"] = str(folder / "cache")
    binary = folder / "verify"
    built = subprocess.run(
        [go, "build", "-o", str(binary), str(SOURCE)],
        env=env,
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr
    return binary


@pytest.fixture
def go_check(go_verifier: Path):
    """Runs the Go verifier on one set of checks, pinning our log's verifier key unless told."""

    def run(**checks: Any) -> dict[str, Any]:
        checks.setdefault("verifier_keys", [str(keys.verifier_key())])
        done = subprocess.run(
            [str(go_verifier)], input=json.dumps(checks), capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    return run


def append(count: int, start: int = 0) -> list[Entry]:
    return [entry_append(kind="interop", envelope={"n": start + i})[0] for i in range(count)]


def sealed_log(seal, sizes: tuple[int, ...]) -> tuple[list[Entry], list[Batch]]:
    entries: list[Entry] = []
    for size in sizes:
        entries += append(size, start=len(entries))
        seal()
    return entries, list(Batch.objects.order_by("number"))


def inclusion_check(entry: Entry, tree_size: int, checkpoint: str | None = None) -> dict[str, Any]:
    proof = selectors.proof_inclusion(leaf_hash=bytes(entry.leaf_hash), tree_size=tree_size)
    check = {
        "index": proof["leaf_index"],
        "leaf_hash_hex": bytes(entry.leaf_hash).hex(),
        "proof_hex": proof["hashes"],
    }
    if checkpoint is None:
        batch = Batch.objects.get(tree_size=tree_size)
        return {**check, "tree_size": tree_size, "root_hex": bytes(batch.root).hex()}
    return {**check, "checkpoint": checkpoint}


def consistency_check(old: Batch, new: Batch) -> dict[str, Any]:
    proof = selectors.proof_consistency(old_size=old.tree_size, new_size=new.tree_size)
    return {
        "old_checkpoint": old.checkpoint,
        "new_checkpoint": new.checkpoint,
        "proof_hex": [step.hex() for step in proof],
    }


def flip_hex(value: str, position: int = 0) -> str:
    return value[:position] + ("0" if value[position] != "0" else "1") + value[position + 1 :]


def test_go_derives_the_same_verifier_key_from_our_public_key(go_check):
    ours = keys.verifier_key()
    result = go_check(public_keys=[{"name": ours.name, "key_hex": ours.public_key.hex()}])
    assert result["verifier_keys"] == [{"ok": True}]
    assert result["public_keys"][0]["verifier_key"] == str(ours)


def test_go_opens_our_checkpoints_and_sets(go_check, seal):
    entries, batches = sealed_log(seal, (1, 256, 43))
    sample = [entries[0], entries[1], entries[200], entries[-1]]
    result = go_check(notes=[b.checkpoint for b in batches] + [e.set_note for e in sample])
    ours = keys.verifier_key()
    for verdict, note in zip(
        result["notes"], [b.checkpoint for b in batches] + [e.set_note for e in sample], strict=True
    ):
        assert verdict["ok"], verdict
        assert verdict["text"] == note_split(note)[0]
        assert verdict["signers"] == [f"{ours.name}+{ours.key_id.hex()}"]
    checkpoint_texts = [v["text"] for v in result["notes"][: len(batches)]]
    assert [text.split("\n")[:2] for text in checkpoint_texts] == [
        [settings.LOG_ORIGIN, str(b.tree_size)] for b in batches
    ]
    set_texts = [v["text"] for v in result["notes"][len(batches) :]]
    assert [text.split("\n")[2] for text in set_texts] == [bytes(e.leaf_hash).hex() for e in sample]


def test_go_checks_our_inclusion_proofs_against_our_signed_checkpoints(go_check, seal):
    entries, batches = sealed_log(seal, (1, 256, 43, 2))
    checks = []
    for position in (0, 1, 255, 256, 257, 299, 300, 301):
        entry = entries[position]
        own = selectors.batch_of_entry(entry=entry)
        for batch in batches:
            if batch.tree_size >= own.tree_size:
                checks.append(inclusion_check(entry, batch.tree_size, batch.checkpoint))
    # the receipt's own proof, against the receipt's checkpoint
    receipt = selectors.receipt_get(entry=entries[100])
    checks.append(
        {
            "checkpoint": receipt["checkpoint"],
            "index": receipt["proof"]["leaf_index"],
            "leaf_hash_hex": receipt["entry"]["leaf_hash"],
            "proof_hex": receipt["proof"]["inclusion"],
        }
    )
    result = go_check(inclusion=checks)
    assert result["inclusion"] == [{"ok": True}] * len(checks)


def test_go_checks_our_consistency_proofs_between_every_two_checkpoints(go_check, seal):
    _, batches = sealed_log(seal, (1, 256, 43, 2, 300))
    checks = [
        consistency_check(old, new)
        for new in batches
        for old in batches
        if old.number <= new.number
    ]
    # each batch header carries the proof from the previous checkpoint: Go checks the chain too
    for previous, batch in zip(batches, batches[1:], strict=False):
        header = json.loads(bytes(batch.header))
        checks.append(
            {
                "old_checkpoint": previous.checkpoint,
                "new_checkpoint": batch.checkpoint,
                "proof_hex": header["consistency"],
            }
        )
    result = go_check(consistency=checks)
    assert result["consistency"] == [{"ok": True}] * len(checks)


def test_go_rejects_checkpoints_and_sets_that_were_tampered_with(go_check, seal):
    entries, (batch,) = sealed_log(seal, (5,))
    checkpoint, set_note = batch.checkpoint, entries[2].set_note
    text, _ = note_split(checkpoint)
    lines = text.split("\n")
    other_root = base64.b64encode(bytes(32)).decode()
    stranger = note_sign(text, settings.LOG_ORIGIN, Ed25519PrivateKey.generate())
    tampered = [
        checkpoint.replace(f"\n{batch.tree_size}\n", f"\n{batch.tree_size + 1}\n", 1),  # size
        checkpoint.replace(lines[2], other_root, 1),  # root
        set_note.replace(bytes(entries[2].leaf_hash).hex(), bytes(entries[3].leaf_hash).hex()),
        checkpoint[:-10] + ("A" if checkpoint[-10] != "A" else "B") + checkpoint[-9:],  # signature
        stranger,  # a good signature by a key that is not the log's
        checkpoint.replace("\u2014 ", "- "),  # not a signed note
    ]
    result = go_check(notes=tampered)
    assert [verdict["ok"] for verdict in result["notes"]] == [False] * len(tampered), result[
        "notes"
    ]
    assert go_check(notes=[checkpoint])["notes"][0]["ok"]


def test_go_rejects_proofs_that_were_tampered_with(go_check, seal):
    entries, batches = sealed_log(seal, (1, 256, 43))
    latest = batches[-1]
    good = inclusion_check(entries[100], latest.tree_size, latest.checkpoint)
    proof = good["proof_hex"]
    bad_inclusion = [
        {**good, "proof_hex": [flip_hex(proof[0]), *proof[1:]]},
        {**good, "proof_hex": [*proof[:-1], flip_hex(proof[-1], 63)]},
        {**good, "proof_hex": proof[:-1]},
        {**good, "proof_hex": [*proof, proof[0]]},
        {**good, "index": good["index"] + 1},
        {**good, "leaf_hash_hex": bytes(entries[101].leaf_hash).hex()},
        {**good, "checkpoint": batches[1].checkpoint},  # the proof is for another tree size
        {**good, "checkpoint": latest.checkpoint.replace("\n300\n", "\n301\n")},  # forged size
    ]
    good_consistency = consistency_check(batches[1], latest)
    steps = good_consistency["proof_hex"]
    bad_consistency = [
        {**good_consistency, "proof_hex": [flip_hex(steps[0]), *steps[1:]]},
        {**good_consistency, "proof_hex": steps[:-1]},
        {**good_consistency, "proof_hex": [*steps, steps[0]]},
        {**good_consistency, "old_checkpoint": batches[0].checkpoint},
        {
            **good_consistency,
            "old_checkpoint": latest.checkpoint,
            "new_checkpoint": batches[1].checkpoint,
        },
    ]
    result = go_check(
        inclusion=[good, *bad_inclusion], consistency=[good_consistency, *bad_consistency]
    )
    assert [v["ok"] for v in result["inclusion"]] == [True] + [False] * len(bad_inclusion), result[
        "inclusion"
    ]
    assert [v["ok"] for v in result["consistency"]] == [True] + [False] * len(bad_consistency), (
        result["consistency"]
    )
