"""Migration 0005: batches sealed with a list of skipped seqs read as ranges afterwards."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from timestamping.models import Batch

BEFORE = [("timestamping", "0004_anchor_reorg")]
AFTER = [("timestamping", "0005_batch_skipped_ranges")]


def migrate(targets: list[tuple[str, str]]) -> None:
    """Migrates to `targets`; AFTER goes on to the latest migration, so that the tests after
    these find the schema the code expects."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    if targets == AFTER:
        targets = executor.loader.graph.leaf_nodes("timestamping")
    executor.migrate(targets)


def batch_insert(number: int, skipped_seqs: list[int]) -> None:
    """A sealed batch row as the code before 0005 wrote it (only the columns that matter here)."""
    digest = bytes([number]) * 32
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO timestamping_batch (number, prev_header_hash, header, header_hash, "
            "prev_tree_size, tree_size, root, first_seq, last_seq, skipped_seqs, checkpoint, "
            "sealed_at) VALUES (%s, %s, %s, %s, 0, %s, %s, 1, %s, %s, '', '2026-01-01T00:00:00Z')",
            [
                number,
                digest,
                b"{}",
                bytes([number + 100]) * 32,
                number,
                digest,
                number * 1000,
                json.dumps(skipped_seqs),
            ],
        )


@pytest.mark.django_db(transaction=True)
def test_old_lists_of_skipped_seqs_become_merged_ranges_even_though_batches_are_append_only():
    migrate(BEFORE)
    try:
        batch_insert(1, [])
        batch_insert(2, [7, 3, 4, 5, 9, 10])
        batch_insert(3, list(range(100, 10_100)))
    finally:
        migrate(AFTER)
    stored = dict(Batch.objects.values_list("number", "skipped_ranges"))
    assert stored == {1: [], 2: [[3, 5], [7, 7], [9, 10]], 3: [[100, 10_099]]}
    if connection.vendor == "postgresql":
        # The conversion switched the append-only trigger off for its own transaction only.
        with pytest.raises(Exception, match="append-only"), connection.cursor() as cursor:
            cursor.execute("UPDATE timestamping_batch SET skipped_ranges = '[]'")


@pytest.mark.django_db(transaction=True)
def test_migrating_back_turns_ranges_into_lists_again():
    Batch.objects.create(
        number=1,
        prev_header_hash=bytes(32),
        header=b"{}",
        header_hash=bytes([1]) * 32,
        prev_tree_size=0,
        tree_size=6,
        root=bytes(32),
        first_seq=1,
        last_seq=10,
        skipped_ranges=[[3, 5], [9, 9]],
        checkpoint="",
        sealed_at=timezone.now(),
    )
    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT skipped_seqs FROM timestamping_batch")
            (stored,) = cursor.fetchone()
    finally:
        migrate(AFTER)
    assert (json.loads(stored) if isinstance(stored, str) else stored) == [3, 4, 5, 9]
