"""`verify_ledger`: a clean log verifies, and each kind of tampering is named with its location."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from hypothesis import given
from hypothesis import strategies as st
from veridict_verify import merkle

from timestamping import keys
from timestamping.ledger_check import LedgerReport, RootStack, ledger_verify
from timestamping.models import Anchor, Batch, Entry, StreamHead, StreamMark, Tile
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

# Batch sizes of the test log: tree sizes 1, 301, 303, 558. Leaf tiles 0/0 and 0/1 fill up (in
# batches 2 and 4), 0/2 stays partial; tile 1/0 holds the roots of the two full leaf tiles.
BATCH_SIZES = (1, 300, 2, 255)


def append(count: int, start: int = 0) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": start + i})[0] for i in range(count)]


def tamper(change: str | Callable[[], object], params: tuple[object, ...] = ()) -> None:
    """Changes stored ledger rows as someone with SQL access to the database would: `change` is
    SQL or a callable that runs QuerySet updates. On PostgreSQL the append-only triggers of
    migration 0002 refuse UPDATE and DELETE, so this first runs `SET session_replication_role =
    replica` on the test's connection (what a superuser attacker would do: it disables the
    triggers) and puts the previous role back afterwards."""
    on_postgres = connection.vendor == "postgresql"
    with connection.cursor() as cursor:
        if on_postgres:
            cursor.execute("SELECT set_config('session_replication_role', 'replica', false)")
        try:
            if callable(change):
                change()
            else:
                cursor.execute(change, params)
        finally:
            if on_postgres:
                cursor.execute("SELECT set_config('session_replication_role', 'origin', false)")


def flipped(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def signature_flipped(note: str) -> str:
    """The note with one byte of its (last) signature changed; the key id is left alone."""
    text, _, line = note.rstrip("\n").rpartition("\n")
    prefix, _, encoded = line.rpartition(" ")
    raw = base64.b64decode(encoded)
    return f"{text}\n{prefix} {base64.b64encode(flipped(raw, 4 + 10)).decode()}\n"


def tile_flipped(level: int, index: int, width: int, position: int) -> None:
    tile = Tile.objects.get(level=level, index=index, width=width)
    hashes = flipped(bytes(tile.hashes), position * 32 + 7)
    tamper(lambda: Tile.objects.filter(pk=tile.pk).update(hashes=hashes))


@pytest.fixture
def log(seal) -> list[Entry]:
    """A sealed log of four batches; its entries in leaf order."""
    entries: list[Entry] = []
    for size in BATCH_SIZES:
        entries += append(size, start=len(entries))
        seal()
    return entries


@pytest.fixture
def verify(tsa_ca_pem) -> Callable[[], LedgerReport]:
    return lambda: ledger_verify(keys=None, tsa_ca_pem=tsa_ca_pem)


def where(report: LedgerReport) -> dict[str, object]:
    assert report.mismatch is not None, "the tampering went unnoticed"
    mismatch = report.mismatch
    found = {
        "what": mismatch.what,
        "entry": mismatch.entry,
        "leaf_index": mismatch.leaf_index,
        "seq": mismatch.seq,
        "batch": mismatch.batch,
        "tile": mismatch.tile,
    }
    return {name: value for name, value in found.items() if value is not None}


def test_an_untampered_log_verifies_every_entry_tile_batch_and_anchor(log, verify):
    report = verify()
    assert report.ok, report.mismatch
    assert (report.entries, report.batches, report.tree_size, report.pending) == (558, 4, 558, 0)
    assert report.tiles == Tile.objects.count() == 8
    assert report.anchors == Anchor.objects.count() == 4
    assert report.summary() == "ledger verified: 558 entries, 4 batches, tree size 558, 0 pending"


def test_entries_after_the_last_batch_are_counted_as_pending(log, verify):
    append(3, start=len(log))
    report = verify()
    assert report.ok, report.mismatch
    assert (report.entries, report.tree_size, report.pending) == (561, 558, 3)


def test_an_empty_log_verifies(verify):
    report = verify()
    assert report.ok and (report.entries, report.batches, report.tree_size) == (0, 0, 0)


def test_changed_canonical_bytes_are_reported_with_the_entry_and_its_leaf_index(log, verify):
    entry = log[100]
    forged = bytes(entry.canonical).replace(b'"n":100', b'"n":666')
    assert forged != bytes(entry.canonical)
    tamper(lambda: Entry.objects.filter(pk=entry.pk).update(canonical=forged))
    assert where(verify()) == {
        "what": "canonical",
        "entry": str(entry.uuid),
        "leaf_index": 100,
        "seq": entry.seq,
        "batch": 2,
    }


def test_a_changed_leaf_hash_is_reported_with_the_entry_and_its_leaf_index(log, verify):
    entry = log[5]
    tamper(
        lambda: Entry.objects.filter(pk=entry.pk).update(leaf_hash=hashlib.sha256(b"x").digest())
    )
    assert where(verify()) == {
        "what": "leaf_hash",
        "entry": str(entry.uuid),
        "leaf_index": 5,
        "seq": entry.seq,
        "batch": 2,
    }


def test_a_changed_byte_of_a_leaf_tile_is_reported_with_the_tile_and_the_leaf(log, verify):
    tile_flipped(level=0, index=1, width=256, position=300 - 256)
    assert where(verify()) == {
        "what": "tile",
        "tile": "0/1",
        "entry": str(log[300].uuid),
        "leaf_index": 300,
        "seq": log[300].seq,
        "batch": 2,
    }


def test_a_changed_byte_of_an_older_narrower_tile_version_is_reported(log, verify):
    # Tile 0/1 was stored 45 wide by batch 2; batch 4 stored it full. Proofs read the widest, but
    # every stored version must be a prefix of the true tile.
    tile_flipped(level=0, index=1, width=45, position=10)
    found = where(verify())
    assert (found["what"], found["tile"], found["leaf_index"]) == ("tile", "0/1 width 45", 266)


def test_a_changed_stored_node_of_a_level_one_tile_is_reported_with_its_tile(log, verify):
    # Position 1 of tile 1/0 is the root of leaves 256..511: recomputed at leaf 511, in batch 4.
    tile_flipped(level=1, index=0, width=2, position=1)
    report = verify()
    assert where(report) == {"what": "tile", "tile": "1/0", "batch": 4}
    assert "leaves 256..511" in report.mismatch.detail


def test_a_tile_stored_beyond_the_tree_is_reported(log, verify):
    Tile.objects.create(level=0, index=7, width=1, hashes=bytes(32))
    assert where(verify()) == {"what": "tile", "tile": "0/7 width 1"}


def test_a_changed_batch_root_is_reported_with_its_batch(log, verify):
    tamper(lambda: Batch.objects.filter(number=3).update(root=hashlib.sha256(b"x").digest()))
    assert where(verify()) == {"what": "batch_root", "batch": 3}


def test_a_broken_chain_link_is_reported_with_the_batch_that_breaks_it(log, verify):
    tamper(
        lambda: Batch.objects.filter(number=3).update(
            prev_header_hash=hashlib.sha256(b"x").digest()
        )
    )
    report = verify()
    assert where(report) == {"what": "chain_link", "batch": 3}
    assert "prev_header_hash" in report.mismatch.detail


def test_one_changed_byte_of_a_checkpoint_signature_is_reported_with_its_batch(log, verify):
    batch = Batch.objects.get(number=2)
    forged = signature_flipped(batch.checkpoint)
    tamper(lambda: Batch.objects.filter(pk=batch.pk).update(checkpoint=forged))
    assert where(verify()) == {"what": "checkpoint_signature", "batch": 2}


def test_a_deleted_entry_is_reported_with_its_seq_and_leaf_index(log, verify):
    entry = log[150]
    tamper(lambda: Entry.objects.filter(pk=entry.pk).delete())
    report = verify()
    assert where(report) == {
        "what": "entry_missing",
        "leaf_index": 150,
        "seq": entry.seq,
        "batch": 2,
    }
    assert bytes(entry.leaf_hash).hex() in report.mismatch.detail


def test_two_swapped_entries_are_reported_at_the_first_leaf_index_they_occupy(log, verify):
    # An attacker reordering history swaps the seqs of two rows (the primary key, so every column
    # moves with its row): each entry still matches its own SET, but not its place in the tree.
    first, second = log[10], log[20]
    tamper("UPDATE timestamping_entry SET seq = %s WHERE seq = %s", (-1, first.seq))
    tamper("UPDATE timestamping_entry SET seq = %s WHERE seq = %s", (first.seq, second.seq))
    tamper("UPDATE timestamping_entry SET seq = %s WHERE seq = %s", (second.seq, -1))
    assert where(verify()) == {
        "what": "entry_position",
        "entry": str(second.uuid),
        "leaf_index": 10,
        "seq": first.seq,
        "batch": 2,
    }


def test_a_changed_set_signature_is_reported_with_the_entry(log, verify):
    entry = log[42]
    forged = signature_flipped(entry.set_note)
    tamper(lambda: Entry.objects.filter(pk=entry.pk).update(set_note=forged))
    report = verify()
    assert where(report) == {
        "what": "set",
        "entry": str(entry.uuid),
        "leaf_index": 42,
        "seq": entry.seq,
        "batch": 2,
    }
    assert "does not verify" in report.mismatch.detail


def test_a_set_moved_from_another_entry_is_reported_as_promising_another_leaf(log, verify):
    entry, other = log[7], log[8]
    tamper(lambda: Entry.objects.filter(pk=entry.pk).update(set_note=other.set_note))
    report = verify()
    assert where(report) == {
        "what": "set",
        "entry": str(entry.uuid),
        "leaf_index": 7,
        "seq": entry.seq,
        "batch": 2,
    }
    assert f"promises leaf {bytes(other.leaf_hash).hex()}" in report.mismatch.detail


def test_a_changed_set_of_a_pending_entry_is_reported_without_a_leaf_index(log, verify):
    (entry,) = append(1, start=len(log))
    forged = signature_flipped(entry.set_note)
    tamper(lambda: Entry.objects.filter(pk=entry.pk).update(set_note=forged))
    assert where(verify()) == {"what": "set", "entry": str(entry.uuid), "seq": entry.seq}


def test_a_changed_anchor_time_stamp_is_reported_with_its_batch(log, verify):
    anchor = Anchor.objects.get(batch__number=2)
    # The last bytes of the DER TimeStampResp are the TSA's signature.
    forged = flipped(bytes(anchor.tsr), len(anchor.tsr) - 5)
    tamper(lambda: Anchor.objects.filter(pk=anchor.pk).update(tsr=forged))
    report = verify()
    assert where(report) == {"what": "anchor", "batch": 2}
    assert report.mismatch.anchor == anchor.pk


def test_entries_signed_before_and_after_a_key_rotation_verify_under_the_published_keys(
    seal, verify, tsa_ca_pem
):
    append(3)
    seal()
    old_key = keys.verifier_key()
    new_pem = keys.private_key_pem(Ed25519PrivateKey.generate()).decode()
    with override_settings(LOG_SIGNING_KEY=new_pem):
        append(2, start=3)
        seal()
    report = verify()
    assert report.ok, report.mismatch
    # Pinning only the retired key, the first thing the new key signed is refused.
    pinned_old = ledger_verify(keys=[old_key], tsa_ca_pem=tsa_ca_pem)
    assert where(pinned_old)["what"] == "set" and where(pinned_old)["leaf_index"] == 3


def test_the_command_prints_the_verdict_of_a_clean_log(log, capsys):
    call_command("verify_ledger", "--no-progress")
    assert (
        capsys.readouterr().out.strip()
        == "ledger verified: 558 entries, 4 batches, tree size 558, 0 pending"
    )
    call_command("verify_ledger", "--no-progress", "--json")
    report = json.loads(capsys.readouterr().out)
    assert (
        report["verdict"] == "verified"
        and report["tree_size"] == 558
        and report["mismatch"] is None
    )


def test_the_command_fails_naming_the_mismatch_and_its_location(log, capsys):
    tamper(lambda: Batch.objects.filter(number=3).update(root=hashlib.sha256(b"x").digest()))
    with pytest.raises(CommandError, match=r"^MISMATCH: batch_root at batch 3: stored root "):
        call_command("verify_ledger", "--no-progress")
    with pytest.raises(CommandError):
        call_command("verify_ledger", "--no-progress", "--json")
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "mismatch" and report["mismatch"]["location"] == "batch 3"


def test_the_command_verifies_a_committed_log_outside_any_transaction(transactional_db, capsys):
    # Outside a test transaction the check reads PostgreSQL through one REPEATABLE READ snapshot.
    # With `transactional_db`, tests/conftest.py lifts the append-only triggers for the flush
    # that empties the tables afterwards.
    from timestamping.services import batch_seal

    append(3)
    batch_seal()
    append(1, start=3)
    capsys.readouterr()  # the sealer's log lines
    call_command("verify_ledger", "--no-progress")
    assert capsys.readouterr().out.strip() == (
        "ledger verified: 4 entries, 1 batches, tree size 3, 1 pending"
    )


def test_the_command_refuses_a_pinned_key_it_cannot_read():
    with pytest.raises(CommandError, match="--key"):
        call_command("verify_ledger", "--no-progress", "--key", "not-a-key")


@given(st.integers(min_value=1, max_value=300))
def test_the_running_root_stack_gives_the_rfc_9162_root_of_any_number_of_leaves(size):
    leaves = [hashlib.sha256(str(i).encode()).digest() for i in range(size)]
    stack = RootStack()
    for leaf in leaves:
        stack.push(leaf)
    assert stack.root() == merkle.root_from_leaves(leaves)


@pytest.fixture
def gapped(seal, seq_gap) -> tuple[Batch, int]:
    """After a first batch, one batch of 5 entries, 10 skipped seqs (a rolled-back bulk), then 5
    entries; the batch and the seq of the last entry before the gap."""
    # The first batch takes whatever seqs earlier tests drew on PostgreSQL's sequence.
    append(1)
    seal()
    before = append(5, start=1)
    seq_gap(10)
    append(5, start=6)
    batch = seal()
    last_before = before[-1].seq
    assert batch.skipped_ranges == [[last_before + 1, last_before + 10]]
    return batch, last_before


def test_a_log_with_a_skipped_range_verifies(gapped, verify):
    report = verify()
    assert report.mismatch is None and report.entries == 11


def test_a_skipped_range_moved_by_one_seq_is_reported_where_no_entry_holds_the_seq(gapped, verify):
    batch, last_before = gapped
    moved = [[last_before + 2, last_before + 11]]
    tamper(lambda: Batch.objects.filter(pk=batch.pk).update(skipped_ranges=moved))
    assert where(verify()) == {
        "what": "entry_missing",
        "leaf_index": 6,
        "seq": last_before + 1,
        "batch": batch.number,
    }


def test_a_skipped_range_widened_over_an_entry_is_reported_as_miscounted(gapped, verify):
    batch, last_before = gapped
    widened = [[last_before + 1, last_before + 11]]
    tamper(lambda: Batch.objects.filter(pk=batch.pk).update(skipped_ranges=widened))
    report = verify()
    assert where(report) == {"what": "skipped_seqs", "batch": batch.number}
    assert "11 skipped are 9 leaves, but the tree grows by 10" in report.mismatch.detail


@pytest.mark.parametrize(
    "ranges",
    [
        [[1, 5], [6, 10]],
        [[6, 10], [1, 5]],
        [[1, 10], [5, 5]],
        list(range(1, 11)),
        [[1, 10, 11]],
        {"1": 10},
    ],
    ids=["split", "out of order", "overlapping", "the old list of seqs", "a triple", "an object"],
)
def test_skipped_ranges_not_in_the_form_sealing_writes_are_reported(gapped, verify, ranges):
    batch, last_before = gapped

    def shifted(value):
        if isinstance(value, list):
            return [shifted(item) for item in value]
        return last_before + value if isinstance(value, int) else value

    forged = shifted(ranges) if isinstance(ranges, list) else ranges
    tamper(lambda: Batch.objects.filter(pk=batch.pk).update(skipped_ranges=forged))
    assert where(verify()) == {"what": "skipped_seqs", "batch": batch.number}


# --- streams (system logs) ------------------------------------------------------------------


@pytest.fixture
def streamed_log(seal) -> list[Entry]:
    """Three batches of entries of streams "a", "b" and none, interleaved; stream "a" grows past
    one leaf tile (256) in the third batch."""
    entries: list[Entry] = []
    for labels in (["a", "b", ""] * 100, ["b"] * 5, ["a"] * 200):
        for label in labels:
            entries.append(entry_append(kind="test", envelope={"n": len(entries)}, stream=label)[0])
        seal()
    return entries


def test_a_log_with_streams_verifies_its_stream_trees_and_v2_headers(streamed_log, verify):
    report = verify()
    assert report.ok, report.mismatch
    assert report.entries == 505
    headers = [json.loads(bytes(b.header)) for b in Batch.objects.order_by("number")]
    assert [h["v"] for h in headers] == [2, 2, 2]
    assert [(s["id"], s["size"]) for s in headers[-1]["streams"]] == [("a", 300)]


def test_a_tampered_stream_root_is_reported_with_its_batch(streamed_log, verify):
    head = StreamHead.objects.get(stream="b", batch__number=2)
    tamper(lambda: StreamHead.objects.filter(pk=head.pk).update(root=bytes(32)))
    assert where(verify()) == {"what": "stream_head", "batch": 2}


def test_a_tampered_stream_tile_is_reported_with_its_batch(streamed_log, verify):
    tile = Tile.objects.get(stream="a", level=0, index=0, width=100)
    hashes = flipped(bytes(tile.hashes), 5)
    tamper(lambda: Tile.objects.filter(pk=tile.pk).update(hashes=hashes))
    assert where(verify()) == {"what": "stream_tile", "batch": 1}


def test_a_stream_mark_pointing_at_another_entry_is_reported_with_its_batch(streamed_log, verify):
    """Stream "a" reaches leaf 256 in batch 3; a mark moved off it would misplace proofs."""
    mark = StreamMark.objects.get(stream="a", leaf_index=256)
    tamper(lambda: StreamMark.objects.filter(pk=mark.pk).update(seq=mark.seq + 1))
    assert where(verify()) == {"what": "stream_mark", "batch": 3}


def test_a_missing_stream_mark_is_reported_with_its_batch(streamed_log, verify):
    tamper(lambda: StreamMark.objects.filter(stream="b", leaf_index=0).delete())
    assert where(verify()) == {"what": "stream_mark", "batch": 1}


def test_an_entry_moved_to_another_stream_in_its_row_is_reported(streamed_log, verify):
    moved = streamed_log[1]  # of stream "b"; its leaf still names "b"
    tamper(lambda: Entry.objects.filter(pk=moved.pk).update(stream="a"))
    found = where(verify())
    assert (found["what"], found["entry"]) == ("entry_fields", str(moved.uuid))
