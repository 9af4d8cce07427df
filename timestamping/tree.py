"""The stored Merkle trees: tiles of 256 hashes, proofs that read O(log n) of them, appends.

Every function works on one tree, named by `stream`: "" is the global log, any other value a
stream's own tree (a system log); the tiles of each are stored apart with the same code."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from django.db import connection
from veridict_verify import merkle

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
HASH = merkle.HASH_SIZE

TileKey = tuple[int, int]  # (level, index)


@dataclass(frozen=True)
class NewTile:
    level: int
    index: int
    hashes: bytes

    @property
    def width(self) -> int:
        return len(self.hashes) // HASH


def _tile_need(height: int, index: int) -> tuple[int, int, int]:
    """The tile (level, index) holding perfect subtree (height, index), and the width it needs."""
    level, rest = divmod(height, TILE_HEIGHT)
    last = ((index + 1) << rest) - 1  # last position at this tile level that the subtree covers
    return level, last // TILE_WIDTH, last % TILE_WIDTH + 1


def tiles_load(needs: Iterable[tuple[int, int, int]], *, stream: str = "") -> dict[TileKey, bytes]:
    """The narrowest stored version of each (level, index) tile that is at least as wide as needed.

    One query, one row per tile: a tile that grew one leaf at a time is stored at up to 256 widths,
    and fetching every version wide enough would read hundreds of rows for one proof.
    """
    wanted: dict[TileKey, int] = {}
    for level, index, width in needs:
        wanted[(level, index)] = max(width, wanted.get((level, index), 0))
    if not wanted:
        return {}
    from timestamping.models import Tile

    # Raw SQL: built as ORM subqueries, this cost more than running it. Only quoted names and
    # placeholders go into the text.
    ops = connection.ops
    table = ops.quote_name(Tile._meta.db_table)
    level_col, index_col, width_col, stream_col = (
        ops.quote_name(c) for c in ("level", "index", "width", "stream")
    )
    # Every stored version of a tile agrees on the hashes they share, so the narrowest wide enough
    # will do; the unique (level, index, width) index answers each MIN directly.
    one_tile = (
        f"({level_col} = %s AND {index_col} = %s AND {width_col} = (SELECT MIN({width_col}) "  # noqa: S608
        f"FROM {table} WHERE {stream_col} = %s AND {level_col} = %s AND {index_col} = %s "
        f"AND {width_col} >= %s))"
    )
    params: list[int | str] = [stream]
    for (level, index), width in wanted.items():
        params += [level, index, stream, level, index, width]
    hashes_col = ops.quote_name("hashes")
    where = f"{stream_col} = %s AND (" + " OR ".join([one_tile] * len(wanted)) + ")"
    sql = f"SELECT {level_col}, {index_col}, {hashes_col} FROM {table} WHERE {where}"  # noqa: S608
    found: dict[TileKey, bytes] = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        for level, index, hashes in cursor.fetchall():
            found[(level, index)] = bytes(hashes)
    missing = sorted(set(wanted) - set(found))
    if missing:
        raise LookupError(f"tree tiles {missing} of stream {stream!r} are not stored")
    return found


@functools.lru_cache(maxsize=2048)  # keys are at most 128 hashes: a few MB when full
def perfect_root(hashes: bytes) -> bytes:
    """The root of a perfect subtree from its 2^k hashes at a tile's level, concatenated.

    Keyed by the bytes, so a cached answer can never be stale; polling auditors keep asking
    for the same subtrees near the tree's right edge."""
    return merkle.root_from_leaves([hashes[i : i + HASH] for i in range(0, len(hashes), HASH)])


class TreeView:
    """Answers MTH(D[lo:hi]) from tiles, loading all that one computation needs in one query.

    `compute` runs a proof or root computation twice: first with placeholder hashes to learn
    which perfect subtrees it asks for (a proof's shape does not depend on hash values), then
    for real.
    """

    def __init__(self, overlay: dict[TileKey, bytes] | None = None, *, stream: str = "") -> None:
        self._tiles: dict[TileKey, bytes] = dict(overlay or {})
        self.stream = stream

    def subtree_hash(self, height: int, index: int) -> bytes:
        level, rest = divmod(height, TILE_HEIGHT)
        first = index << rest
        tile = self._tiles[(level, first // TILE_WIDTH)]
        offset = (first % TILE_WIDTH) * HASH
        return perfect_root(tile[offset : offset + (HASH << rest)])

    def range_hash(self, lo: int, hi: int) -> bytes:
        return merkle.fold_right(
            [self.subtree_hash(h, i) for h, i in merkle.perfect_subtrees(lo, hi)]
        )

    def compute(self, computation: Callable[[merkle.RangeHash], list[bytes]]) -> list[bytes]:
        needs: set[tuple[int, int, int]] = set()

        def record(lo: int, hi: int) -> bytes:
            needs.update(_tile_need(h, i) for h, i in merkle.perfect_subtrees(lo, hi))
            return bytes(HASH)

        computation(record)
        absent = [need for need in needs if len(self._tiles.get(need[:2], b"")) < need[2] * HASH]
        self._tiles.update(tiles_load(absent, stream=self.stream))
        return computation(self.range_hash)


def tree_root(size: int, view: TreeView | None = None, *, stream: str = "") -> bytes:
    if size == 0:
        return merkle.EMPTY_ROOT
    return (view or TreeView(stream=stream)).compute(lambda range_hash: [range_hash(0, size)])[0]


def inclusion_proof(index: int, size: int, *, stream: str = "") -> list[bytes]:
    return TreeView(stream=stream).compute(
        lambda range_hash: merkle.inclusion_proof(index, size, range_hash)
    )


def consistency_proof(
    old_size: int, new_size: int, view: TreeView | None = None, *, stream: str = ""
) -> list[bytes]:
    return (view or TreeView(stream=stream)).compute(
        lambda range_hash: merkle.consistency_proof(old_size, new_size, range_hash)
    )


def tree_extend(old_size: int, leaf_hashes: list[bytes], *, stream: str = "") -> list[NewTile]:
    """The tiles that appending these leaves to a tree of old_size adds, at every level.

    At each level the hashes that become complete are grouped into tiles; a tile that was partial is
    loaded and written again wider. Each full tile of 256 hashes yields one hash of the level above.
    """
    new_tiles: list[NewTile] = []
    level, before, additions = 0, old_size, leaf_hashes
    while additions:
        after = before + len(additions)
        first_tile = before // TILE_WIDTH
        prefix_width = before % TILE_WIDTH
        prefix = (
            tiles_load([(level, first_tile, prefix_width)], stream=stream)[(level, first_tile)]
            if prefix_width
            else b""
        )
        known = prefix[: prefix_width * HASH] + b"".join(additions)
        parents: list[bytes] = []
        for tile_index in range(first_tile, (after - 1) // TILE_WIDTH + 1):
            start = (tile_index - first_tile) * TILE_WIDTH * HASH
            hashes = known[start : start + TILE_WIDTH * HASH]
            new_tiles.append(NewTile(level, tile_index, hashes))
            if len(hashes) == TILE_WIDTH * HASH:
                parents.append(
                    merkle.root_from_leaves(
                        [hashes[i : i + HASH] for i in range(0, len(hashes), HASH)]
                    )
                )
        level, before, additions = level + 1, before // TILE_WIDTH, parents
    return new_tiles
