"""Streams (system logs): each stream's own tree, its heads, header v2 and proofs by leaf hash."""

from __future__ import annotations

import base64
import itertools
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from veridict_verify import merkle

from timestamping import selectors, tree
from timestamping.models import STREAM_MARK_EVERY, Batch, Entry, StreamHead, StreamMark
from timestamping.services import EnvelopeError, entry_append, sealing

pytestmark = pytest.mark.django_db

# Fresh stream labels for every hypothesis example: examples share one test database.
_labels = itertools.count()


def header_of(batch: Batch) -> dict:
    return json.loads(bytes(batch.header))


def test_a_leaf_without_a_stream_is_byte_identical_to_before():
    entry, _ = entry_append(kind="test", envelope={"n": 1})
    leaf = json.loads(bytes(entry.canonical))
    assert sorted(leaf) == ["body", "id", "kind", "received_at", "v"]
    assert entry.stream == ""


def test_a_leaf_names_its_stream_so_the_stream_is_bound_by_the_leaf_hash():
    entry, _ = entry_append(kind="test", envelope={"n": 1}, stream="abc123")
    assert json.loads(bytes(entry.canonical))["stream"] == "abc123"
    assert bytes(entry.leaf_hash) == merkle.leaf_hash(bytes(entry.canonical))


def test_a_stream_label_that_is_not_a_short_lower_case_label_is_refused():
    with pytest.raises(EnvelopeError, match="stream"):
        entry_append(kind="test", envelope={}, stream="Has Spaces")


def test_a_batch_without_streams_keeps_writing_version_1_headers(seal):
    entry_append(kind="test", envelope={"n": 1})
    batch = seal()
    header = header_of(batch)
    assert header["v"] == 1 and "streams" not in header
    assert not StreamHead.objects.exists()


def test_a_batch_header_v2_lists_every_stream_it_touched_with_sizes_and_roots(seal):
    for n, stream in enumerate(["bb", "aa", "bb", ""]):
        entry_append(kind="test", envelope={"n": n}, stream=stream)
    first = seal()
    entry_append(kind="test", envelope={"n": 9}, stream="bb")
    second = seal()
    assert header_of(first)["v"] == 2
    assert [(s["id"], s["prev_size"], s["size"]) for s in header_of(first)["streams"]] == [
        ("aa", 0, 1),
        ("bb", 0, 2),
    ]
    assert [(s["id"], s["prev_size"], s["size"]) for s in header_of(second)["streams"]] == [
        ("bb", 2, 3)
    ]
    for batch in (first, second):
        for item in header_of(batch)["streams"]:
            head = StreamHead.objects.get(stream=item["id"], batch=batch)
            assert bytes(head.root).hex() == item["root"]


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=40),
        min_size=1,
        max_size=5,
    )
)
def test_stream_trees_equal_the_rfc_9162_tree_of_their_leaves_in_log_order(seal, plan, monkeypatch):
    """Entries of four systems (3: no stream) interleaved at random, sealed in random batches:
    each stream's stored root, at every batch, is the in-memory root of its leaves so far.
    Stream marks every 3 leaves here, so that leaf indices are counted from marks written by
    earlier batches and by the same batch alike."""
    monkeypatch.setattr(sealing, "STREAM_MARK_EVERY", 3)
    example = next(_labels)
    labels = [f"t{example}-{system}" for system in range(3)] + [""]
    expected: dict[str, list[bytes]] = {label: [] for label in labels[:3]}
    entries: list[Entry] = []
    for batch_plan in plan:
        for n, system in enumerate(batch_plan):
            entry, _ = entry_append(
                kind="test", envelope={"n": n, "e": example}, stream=labels[system]
            )
            entries.append(entry)
            if labels[system]:
                expected[labels[system]].append(bytes(entry.leaf_hash))
        batch = seal()
        # Every head this batch wrote is the root of the stream's leaves so far, as committed.
        for item in header_of(batch).get("streams", []):
            leaves = expected[item["id"]][: item["size"]]
            assert item["size"] == len(expected[item["id"]])
            assert item["root"] == merkle.root_from_leaves(leaves).hex()
    for label, leaves in expected.items():
        size = len(leaves)
        assert selectors.stream_size_current(stream=label) == size
        if not size:
            continue
        assert tree.tree_root(size, stream=label) == merkle.root_from_leaves(leaves)
    for entry in entries:
        if not entry.stream:
            continue
        leaves = expected[entry.stream]
        head, index = selectors.stream_position(entry=entry)
        assert leaves[index] == bytes(entry.leaf_hash)
        proof = selectors.proof_stream_inclusion(
            stream=entry.stream, leaf_hash=bytes(entry.leaf_hash), tree_size=len(leaves)
        )
        merkle.verify_inclusion(
            index,
            len(leaves),
            bytes(entry.leaf_hash),
            [bytes.fromhex(h) for h in proof["hashes"]],
            merkle.root_from_leaves(leaves),
        )
        if head.size < len(leaves):
            consistency = selectors.proof_stream_consistency(
                stream=entry.stream, old_size=head.size, new_size=len(leaves)
            )
            merkle.verify_consistency(
                head.size,
                len(leaves),
                bytes(head.root),
                merkle.root_from_leaves(leaves),
                consistency,
            )


def test_a_receipt_of_a_stream_entry_carries_its_stream_inclusion_proof(seal):
    entry_append(kind="test", envelope={"n": 0}, stream="ss")
    entry, _ = entry_append(kind="test", envelope={"n": 1}, stream="ss")
    assert selectors.receipt_get(entry=entry)["stream"] is None  # pending
    batch = seal()
    stream = selectors.receipt_get(entry=entry)["stream"]
    assert stream["id"] == "ss" and stream["leaf_index"] == 1 and stream["tree_size"] == 2
    (item,) = header_of(batch)["streams"]
    merkle.verify_inclusion(
        1,
        2,
        bytes(entry.leaf_hash),
        [bytes.fromhex(h) for h in stream["inclusion"]],
        bytes.fromhex(item["root"]),
    )
    assert base64.b64decode(selectors.receipt_get(entry=entry)["batch"]["header_b64"])


def test_a_receipt_of_an_entry_of_no_stream_has_no_stream_field(seal):
    entry, _ = entry_append(kind="test", envelope={"n": 0})
    seal()
    assert "stream" not in selectors.receipt_get(entry=entry)


def test_a_proof_by_leaf_hash_in_another_stream_is_refused(seal):
    entry, _ = entry_append(kind="test", envelope={"n": 0}, stream="one")
    entry_append(kind="test", envelope={"n": 1}, stream="two")
    seal()
    with pytest.raises(selectors.NotInLog):
        selectors.proof_stream_inclusion(
            stream="two", leaf_hash=bytes(entry.leaf_hash), tree_size=1
        )


def test_sealing_marks_every_256th_leaf_of_a_stream_with_its_seq(seal):
    """What lets a leaf's stream index be found without counting the stream's entries before it:
    the nearest mark, then fewer than STREAM_MARK_EVERY entries."""
    for n in range(STREAM_MARK_EVERY + 10):
        entry_append(kind="test", envelope={"n": n}, stream="big")
        entry_append(kind="test", envelope={"n": n}, stream="")
    seal(max_entries=301)  # splits the stream's leaves over two batches
    seal()
    stream_seqs = list(
        Entry.objects.filter(stream="big").order_by("seq").values_list("seq", flat=True)
    )
    marks = list(
        StreamMark.objects.filter(stream="big")
        .order_by("leaf_index")
        .values_list("leaf_index", "seq")
    )
    assert marks == [(0, stream_seqs[0]), (STREAM_MARK_EVERY, stream_seqs[STREAM_MARK_EVERY])]
    for index in (0, 1, STREAM_MARK_EVERY - 1, STREAM_MARK_EVERY, len(stream_seqs) - 1):
        assert selectors.stream_leaf_index(stream="big", seq=stream_seqs[index]) == index


def test_a_stream_leaf_index_counts_only_from_the_nearest_mark(seal, django_assert_num_queries):
    for n in range(STREAM_MARK_EVERY + 2):
        entry_append(kind="test", envelope={"n": n}, stream="big")
    seal()
    last = Entry.objects.filter(stream="big").order_by("-seq").first()
    mark_seq = StreamMark.objects.get(stream="big", leaf_index=STREAM_MARK_EVERY).seq
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert selectors.stream_leaf_index(stream="big", seq=last.seq) == STREAM_MARK_EVERY + 1
    count_sql = queries.captured_queries[-1]["sql"]
    assert "COUNT(" in count_sql.upper() and f">= {mark_seq}" in count_sql


def test_a_pending_stream_entry_has_no_stream_proof_yet(seal):
    entry_append(kind="test", envelope={"n": 0}, stream="pp")
    seal()
    pending, _ = entry_append(kind="test", envelope={"n": 1}, stream="pp")
    with pytest.raises(selectors.NotInLog, match="no sealed entry"):
        selectors.proof_stream_inclusion(
            stream="pp", leaf_hash=bytes(pending.leaf_hash), tree_size=1
        )


def test_the_migration_marks_the_stream_leaves_sealed_before_it_and_no_pending_one(
    seal, monkeypatch
):
    """Migration 0007's backfill: stream leaves sealed by a sealer that wrote no marks get the
    marks the sealer writes now; an entry still pending is left to the sealer."""
    import importlib

    from django.apps import apps
    from django.db import connection

    backfill = importlib.import_module("timestamping.migrations.0007_stream_marks")

    class Editor:  # the one thing the backfill asks of a schema editor
        def __init__(self):
            self.connection = connection

        def execute(self, sql):
            with connection.cursor() as cursor:
                cursor.execute(sql)

    with monkeypatch.context() as patched:
        patched.setattr(StreamMark.objects, "bulk_create", lambda rows: [])
        for n in range(STREAM_MARK_EVERY):
            entry_append(kind="test", envelope={"n": n}, stream="old")
            entry_append(kind="test", envelope={"n": n}, stream="other")
        seal(max_entries=301)
        seal()
    assert not StreamMark.objects.exists()
    pending, _ = entry_append(kind="test", envelope={"n": -1}, stream="old")

    backfill.marks_backfill(apps, Editor())

    old_seqs = list(
        Entry.objects.filter(stream="old").order_by("seq").values_list("seq", flat=True)
    )
    assert list(
        StreamMark.objects.order_by("stream", "leaf_index").values_list(
            "stream", "leaf_index", "seq"
        )
    ) == [
        ("old", 0, old_seqs[0]),
        ("other", 0, Entry.objects.filter(stream="other").order_by("seq").first().seq),
    ]
    seal()  # marks the pending entry, index 256, itself: no unique constraint breaks
    assert StreamMark.objects.get(stream="old", leaf_index=STREAM_MARK_EVERY).seq == pending.seq
    assert selectors.stream_leaf_index(stream="old", seq=pending.seq) == STREAM_MARK_EVERY
