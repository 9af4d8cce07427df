"""The stored tree (tiles in the database) against the in-memory reference of merkle.py."""

from __future__ import annotations

import functools
import random

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from veridict_verify import merkle

from timestamping import tree
from timestamping.models import Tile

pytestmark = pytest.mark.django_db

TILE_EDGES = (255, 256, 257)
DEEP_EDGES = (65535, 65536, 65537)  # where the first level-2 tile appears


def leaves(count: int) -> list[bytes]:
    return [merkle.leaf_hash(b"leaf %d" % n) for n in range(count)]


def tiles_append(old_size: int, leaf_hashes: list[bytes]) -> None:
    """What services/sealing.py does with a batch's leaves: extend the tree, store the new tiles."""
    new_tiles = tree.tree_extend(old_size, leaf_hashes)
    Tile.objects.bulk_create(
        Tile(level=t.level, index=t.index, width=t.width, hashes=t.hashes) for t in new_tiles
    )


class MemoryTree:
    """The reference: proofs from merkle's generators over leaf hashes held in memory."""

    def __init__(self, leaf_hashes: list[bytes]) -> None:
        self.leaf_hashes = leaf_hashes
        # Cached, as the ranges of proofs in one tree repeat; each one is still root_from_leaves.
        self.range_hash = functools.lru_cache(maxsize=None)(
            lambda lo, hi: merkle.root_from_leaves(leaf_hashes[lo:hi])
        )

    def root(self, size: int) -> bytes:
        return self.range_hash(0, size) if size else merkle.EMPTY_ROOT

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return merkle.inclusion_proof(index, size, self.range_hash)

    def consistency(self, old_size: int, new_size: int) -> list[bytes]:
        return merkle.consistency_proof(old_size, new_size, self.range_hash)


def assert_stored_tree_matches(
    memory: MemoryTree, size: int, indices: set[int], old_sizes: set[int]
) -> None:
    assert tree.tree_root(size) == memory.root(size), size
    for index in sorted(i for i in indices if 0 <= i < size):
        assert tree.inclusion_proof(index, size) == memory.inclusion(index, size), (index, size)
    for old_size in sorted(m for m in old_sizes if 0 < m <= size):
        assert tree.consistency_proof(old_size, size) == memory.consistency(old_size, size), (
            old_size,
            size,
        )


def random_splits(rng: random.Random, total: int) -> list[int]:
    """Batch sizes that add up to total: single leaves, a few, whole tiles and odd large runs."""
    splits: list[int] = []
    while sum(splits) < total:
        splits.append(
            min(
                rng.choice([1, 1, 2, 3, rng.randint(4, 40), 255, 256, 257, rng.randint(41, 600)]),
                total - sum(splits),
            )
        )
    return splits


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_stored_tree_gives_the_in_memory_roots_and_proofs_after_every_batch(seed: int):
    rng = random.Random(seed)
    all_leaves = leaves(1400)
    memory = MemoryTree(all_leaves)
    boundaries: list[int] = []
    size = 0
    for batch in random_splits(rng, len(all_leaves)):
        tiles_append(size, all_leaves[size : size + batch])
        previous, size = size, size + batch
        boundaries.append(size)
        edges = {0, previous - 1, previous, size - 1, *TILE_EDGES, *(b - 1 for b in boundaries)}
        sampled = {rng.randrange(size) for _ in range(4)}
        assert_stored_tree_matches(
            memory,
            size,
            indices=edges | sampled,
            old_sizes={*boundaries, *TILE_EDGES, previous, 1, rng.randint(1, size)},
        )
    # Proofs against every earlier tree size, and sizes that were never a batch boundary, still
    # come out right once later batches widened the tiles they read.
    for old_size in [*boundaries, *(rng.randint(1, size) for _ in range(5))]:
        assert_stored_tree_matches(
            memory,
            old_size,
            indices={0, old_size - 1, rng.randrange(old_size)},
            old_sizes={1, old_size // 2 or 1},
        )


def test_a_proof_against_an_old_tree_size_is_the_same_after_later_batches():
    # What a receipt handed out early relies on: asking again later gives the same proof, which
    # still leads to the old root, although the tiles it reads have since been stored wider.
    all_leaves = leaves(700)
    old_sizes = (3, 100, 255, 300)  # 3 and 300 sit inside a tile, 255 one short of a full tile
    sizes = (*old_sizes, 301, 302, 513, 700)
    issued: dict[int, tuple[bytes, list[list[bytes]], list[list[bytes]]]] = {}
    previous = 0
    for size in sizes:
        tiles_append(previous, all_leaves[previous:size])
        previous = size
        if size in old_sizes:
            issued[size] = (
                tree.tree_root(size),
                [tree.inclusion_proof(i, size) for i in range(size)],
                [tree.consistency_proof(m, size) for m in range(1, size + 1)],
            )
    assert (
        Tile.objects.filter(level=0, index=1).count() > 1
    )  # tile 0/1 was stored at several widths
    for size, (root, inclusion, consistency) in issued.items():
        assert tree.tree_root(size) == root == merkle.root_from_leaves(all_leaves[:size])
        for i in range(size):
            assert tree.inclusion_proof(i, size) == inclusion[i]
            merkle.verify_inclusion(i, size, all_leaves[i], inclusion[i], root)
        for m in range(1, size + 1):
            assert tree.consistency_proof(m, size) == consistency[m - 1]
        merkle.verify_consistency(
            size, 700, root, tree.tree_root(700), tree.consistency_proof(size, 700)
        )


@pytest.fixture
def deep_tree() -> tuple[MemoryTree, list[int]]:
    """70,000 leaves stored in batches that end at and around the level-1 and level-2 edges."""
    all_leaves = leaves(70_000)
    boundaries = [*TILE_EDGES, 1000, *DEEP_EDGES, 70_000]
    size = 0
    for boundary in boundaries:
        tiles_append(size, all_leaves[size:boundary])
        size = boundary
    return MemoryTree(all_leaves), boundaries


def test_a_deep_tree_gives_the_in_memory_roots_and_proofs_at_every_tile_edge(deep_tree):
    memory, boundaries = deep_tree
    edges = {0, *TILE_EDGES, *DEEP_EDGES, *(b - 1 for b in boundaries), 69_999, 12_345}
    for size in boundaries:
        assert_stored_tree_matches(memory, size, indices=edges, old_sizes={*boundaries, 1, 300})
    # sizes just off the stored batches, answered from wider tiles
    for size in (65_534, 65_538, 69_999):
        assert_stored_tree_matches(
            memory, size, indices={0, 65_535, size - 1}, old_sizes={255, 65_536}
        )


def test_one_proof_in_a_deep_tree_is_one_query(deep_tree, django_assert_num_queries):
    for index, size in [(0, 70_000), (65_536, 70_000), (69_999, 70_000), (300, 1000), (3, 256)]:
        with django_assert_num_queries(1):
            tree.inclusion_proof(index, size)
    with django_assert_num_queries(1):
        tree.consistency_proof(257, 70_000)
    with django_assert_num_queries(1):
        tree.tree_root(65_537)


def tile_rows_read(run) -> tuple[int, object]:
    """How many Tile rows the single query that run() makes returns (run again, on its own)."""
    with CaptureQueriesContext(connection) as captured:
        result = run()
    assert len(captured.captured_queries) == 1
    with connection.cursor() as cursor:
        cursor.execute(captured.captured_queries[0]["sql"])
        return len(cursor.fetchall()), result


def test_a_proof_reads_one_tile_row_per_tile_even_when_tiles_grew_one_leaf_at_a_time():
    # 300 batches of one leaf store tile 0/0 at all 256 widths: a proof must still read one of them.
    all_leaves = leaves(300)
    for size in range(300):
        tiles_append(size, all_leaves[size : size + 1])
    assert Tile.objects.filter(level=0, index=0).count() == 256
    memory = MemoryTree(all_leaves)

    rows, proof = tile_rows_read(lambda: tree.inclusion_proof(3, 10))
    assert proof == memory.inclusion(3, 10)
    assert rows == 1
    rows, proof = tile_rows_read(lambda: tree.inclusion_proof(3, 300))
    assert proof == memory.inclusion(3, 300)
    assert rows == 2  # tile 0/0 at width 256 and tile 0/1 at width 44
    rows, proof = tile_rows_read(lambda: tree.consistency_proof(17, 299))
    assert proof == memory.consistency(17, 299)
    assert rows == 2


def test_proofs_in_a_deep_tree_read_a_few_rows_per_level(deep_tree):
    memory, _ = deep_tree
    for index, size in [(0, 70_000), (65_536, 70_000), (12_345, 65_537), (3, 1000)]:
        rows, proof = tile_rows_read(
            lambda index=index, size=size: tree.inclusion_proof(index, size)
        )
        assert proof == memory.inclusion(index, size)
        assert rows <= 2 * 3  # at most two tiles on each of the three levels


def test_a_proof_beyond_the_stored_tree_is_refused_not_invented():
    tiles_append(0, leaves(10))
    with pytest.raises(LookupError):
        tree.inclusion_proof(3, 11)
    with pytest.raises(LookupError):
        tree.consistency_proof(5, 11)
    with pytest.raises(merkle.ProofError):
        tree.inclusion_proof(10, 10)
