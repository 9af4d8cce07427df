"""Appending, sealing and receipts, through the services."""

from __future__ import annotations

import pytest
from veridict_verify import merkle
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from timestamping import keys, selectors, tree
from timestamping.ledger_check import ledger_verify
from timestamping.models import Batch, Entry
from timestamping.services import EnvelopeError, entry_append

pytestmark = pytest.mark.django_db


def append(count: int, start: int = 0) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": start + i})[0] for i in range(count)]


def test_a_sealed_entry_receipt_verifies_every_step(tsa_ca_pem, seal):
    (entry,) = append(1)
    seal()
    report = receipt_verify(
        selectors.receipt_get(entry=entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
    )
    assert [(s.name, s.status) for s in report.steps] == [
        ("leaf", "ok"),
        ("set", "ok"),
        ("inclusion", "ok"),
        ("checkpoint_signature", "ok"),
        ("batch_header", "ok"),
        ("anchor[0]", "ok"),
    ], report.steps


def test_a_pending_receipt_verifies_its_set_and_says_it_is_pending():
    (entry,) = append(1)
    report = receipt_verify(selectors.receipt_get(entry=entry), keys=[keys.verifier_key()])
    assert [s.status for s in report.steps] == ["ok", "ok", "pending", "pending", "pending"]
    assert not report.ok and report.failed is None


def test_batches_chain_and_the_stored_root_is_the_root_of_all_leaves(seal):
    entries = []
    for size in (1, 300, 2, 255, 700):
        entries += append(size, start=len(entries))
        seal()
    batches = list(Batch.objects.order_by("number"))
    assert [b.number for b in batches] == [1, 2, 3, 4, 5]
    for previous, batch in zip(batches, batches[1:], strict=False):
        assert bytes(batch.prev_header_hash) == bytes(previous.header_hash)
        assert batch.prev_tree_size == previous.tree_size
    leaf_hashes = [bytes(e.leaf_hash) for e in entries]
    assert bytes(batches[-1].root) == merkle.root_from_leaves(leaf_hashes)
    for batch in batches:
        assert tree.tree_root(batch.tree_size) == merkle.root_from_leaves(
            leaf_hashes[: batch.tree_size]
        )


def test_every_receipt_in_several_batches_verifies(tsa_ca_pem, seal):
    entries = []
    for size in (3, 257, 1):
        entries += append(size, start=len(entries))
        seal()
    pinned = [keys.verifier_key()]
    for entry in entries[::7] + entries[-2:]:
        report = receipt_verify(
            selectors.receipt_get(entry=entry), keys=pinned, tsa_ca_pem=tsa_ca_pem
        )
        assert report.ok, report.steps


def test_seal_with_nothing_pending_makes_no_batch(seal):
    assert seal() is None
    append(2)
    assert seal() is not None
    assert seal() is None
    assert Batch.objects.count() == 1


def test_seal_takes_at_most_max_entries_and_leaves_the_rest_pending(seal):
    append(10)
    first = seal(max_entries=4)
    second = seal(max_entries=4)
    third = seal(max_entries=4)
    assert [first.tree_size, second.tree_size, third.tree_size] == [4, 8, 10]


def test_the_same_idempotency_key_returns_the_first_entry():
    first, created = entry_append(kind="test", envelope={"a": 1}, idempotency_key="k1")
    again, created_again = entry_append(kind="test", envelope={"a": 2}, idempotency_key="k1")
    assert created and not created_again
    assert again.pk == first.pk
    assert Entry.objects.count() == 1


@pytest.mark.parametrize(
    "envelope",
    [{"big": 2**53 + 1}, {"lone": "\ud800"}, {"when": object()}],
    ids=["integer beyond 2^53", "lone surrogate", "not JSON"],
)
def test_an_envelope_that_is_not_i_json_is_refused(envelope):
    with pytest.raises(EnvelopeError):
        entry_append(kind="test", envelope=envelope)
    assert Entry.objects.count() == 0


def test_inclusion_and_consistency_proofs_from_the_api_selectors_verify(seal):
    entries = append(600)
    seal(max_entries=250)
    seal()
    latest = selectors.batch_latest()
    root = bytes(latest.root)
    for entry in entries[::53]:
        proof = selectors.proof_inclusion(leaf_hash=bytes(entry.leaf_hash), tree_size=600)
        merkle.verify_inclusion(
            proof["leaf_index"],
            600,
            bytes(entry.leaf_hash),
            [bytes.fromhex(h) for h in proof["hashes"]],
            root,
        )
    old_root = tree.tree_root(250)
    merkle.verify_consistency(
        250, 600, old_root, root, selectors.proof_consistency(old_size=250, new_size=600)
    )


def test_a_receipt_does_not_verify_under_another_key(tsa_ca_pem, seal):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    (entry,) = append(1)
    seal()
    stranger = VerifierKey.from_public_key(
        keys.verifier_key().name, Ed25519PrivateKey.generate().public_key()
    )
    report = receipt_verify(
        selectors.receipt_get(entry=entry), keys=[stranger], tsa_ca_pem=tsa_ca_pem
    )
    assert report.failed.name == "set"


def test_a_batch_after_a_rolled_back_bulk_of_10000_stores_one_range_and_places_its_entries(
    tsa_ca_pem, seal, seq_gap
):
    # Sealed first, so that the batch under test starts right after it (on PostgreSQL, the
    # sequence also carries the seqs that earlier tests' rolled-back transactions drew).
    (before,) = append(1)
    seal()
    seq_gap(10_000)
    after = append(3, start=1)
    batch = seal()
    assert batch.skipped_ranges == [[before.seq + 1, before.seq + 10_000]]
    assert after[0].seq == before.seq + 10_001
    assert [batch.leaf_index_of(entry.seq) for entry in after] == [1, 2, 3]
    assert [batch.seq_at(index) for index in (1, 2, 3)] == [entry.seq for entry in after]
    proof = selectors.proof_inclusion(leaf_hash=bytes(after[-1].leaf_hash), tree_size=4)
    assert proof["leaf_index"] == 3
    report = receipt_verify(
        selectors.receipt_get(entry=after[-1]), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
    )
    assert report.ok, report.steps
    assert ledger_verify(keys=None, tsa_ca_pem=tsa_ca_pem).mismatch is None
