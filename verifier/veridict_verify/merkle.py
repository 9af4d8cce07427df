"""RFC 9162 §2.1 Merkle tree hashing, proof generation and proof verification, as pure functions."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

RangeHash = Callable[[int, int], bytes]
"""Returns MTH(D[lo:hi]) for the ranges the RFC's recursions ask for (lo is a multiple of a power of
two at least hi - lo), so a stored tree can answer from its perfect subtrees."""


class ProofError(ValueError):
    """A proof, or the sizes and hashes it is checked against, does not verify."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_point(size: int) -> int:
    """The largest power of two smaller than size (size > 1): where the RFC splits a tree."""
    return 1 << ((size - 1).bit_length() - 1)


def perfect_subtrees(lo: int, hi: int) -> list[tuple[int, int]]:
    """The aligned perfect subtrees, as (height, index), whose right fold is MTH(D[lo:hi])."""
    subtrees = []
    while lo < hi:
        height = min((lo & -lo).bit_length() - 1 if lo else 64, (hi - lo).bit_length() - 1)
        subtrees.append((height, lo >> height))
        lo += 1 << height
    return subtrees


def fold_right(hashes: Sequence[bytes]) -> bytes:
    """Combine the perfect subtree hashes of a range, largest first, into the range's root."""
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def root_from_leaves(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of a whole list of leaf hashes, bottom up: pairs combine, an odd last node moves up."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def memory_range_hash(leaf_hashes: Sequence[bytes]) -> RangeHash:
    """A RangeHash over leaf hashes held in memory."""

    def range_hash(lo: int, hi: int) -> bytes:
        return root_from_leaves(leaf_hashes[lo:hi])

    return range_hash


def inclusion_proof(index: int, size: int, range_hash: RangeHash) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 §2.1.3.1, leaf side first."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        mid = lo + split_point(hi - lo)
        if index < mid:
            path.append(range_hash(mid, hi))
            hi = mid
        else:
            path.append(range_hash(lo, mid))
            lo = mid
    path.reverse()
    return path


def consistency_proof(old_size: int, new_size: int, range_hash: RangeHash) -> list[bytes]:
    """PROOF(old_size, D[0:new_size]) of RFC 9162 §2.1.4.1; empty when the sizes are equal."""
    if not 0 < old_size <= new_size:
        raise ProofError(f"no consistency proof from size {old_size} to size {new_size}")
    proof: list[bytes] = []
    lo, hi, m = 0, new_size, old_size
    whole_old_tree = True  # SUBPROOF's b: is [lo, lo+m) the whole old tree seen so far?
    while m != hi - lo:
        k = split_point(hi - lo)
        if m <= k:
            proof.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            proof.append(range_hash(lo, lo + k))
            lo, m, whole_old_tree = lo + k, m - k, False
    if not whole_old_tree:
        proof.append(range_hash(lo, hi))
    proof.reverse()
    return proof


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that proof and leaf hash imply (RFC 9162 §2.1.3.2), or ProofError."""
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    fn, sn, root = index, size - 1, leaf
    for position, sibling in enumerate(proof):
        _check_hash(sibling, f"proof hash {position}")
        if sn == 0:
            raise ProofError(
                f"proof has {len(proof)} hashes, more than a tree of size {size} needs"
            )
        if fn & 1 or fn == sn:
            root = node_hash(sibling, root)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            root = node_hash(root, sibling)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"proof has {len(proof)} hashes, fewer than a tree of size {size} needs")
    return root


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    _check_hash(root, "root")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError(
            f"inclusion proof of leaf {index} does not lead to the root of tree size {size}"
        )


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """RFC 9162 §2.1.4.2. A proof from the empty tree proves nothing and is refused."""
    if old_size <= 0:
        raise ProofError("a consistency proof from the empty tree proves nothing")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is larger than new size {new_size}")
    if old_size == new_size:
        if proof:
            raise ProofError("trees of equal size need an empty proof")
        if old_root != new_root:
            raise ProofError(f"two different roots for tree size {old_size}")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if not proof:
        raise ProofError("empty consistency proof between different sizes")
    for position, step in enumerate(proof):
        _check_hash(step, f"proof hash {position}")
    path = list(proof)
    if (
        old_size & (old_size - 1) == 0
    ):  # the old tree is a perfect subtree: its root starts the path
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    old_acc = new_acc = path[0]
    for step in path[1:]:
        if sn == 0:
            raise ProofError(f"consistency proof has {len(proof)} hashes, more than needed")
        if fn & 1 or fn == sn:
            old_acc, new_acc = node_hash(step, old_acc), node_hash(step, new_acc)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            new_acc = node_hash(new_acc, step)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise ProofError(f"consistency proof has {len(proof)} hashes, fewer than needed")
    if old_acc != old_root:
        raise ProofError(f"consistency proof does not lead to the root of tree size {old_size}")
    if new_acc != new_root:
        raise ProofError(f"consistency proof does not lead to the root of tree size {new_size}")


def compact_range(size: int, range_hash: RangeHash) -> list[bytes]:
    """The left border of a tree of this size: the hashes of its perfect subtrees, one per set
    bit of `size`, largest first. By RFC 9162 §2.1.1 (MTH splits at the largest power of two
    below n), MTH(D[0:size]) is their right fold; and they are all that appending needs."""
    return [
        range_hash(index << height, (index + 1) << height)
        for height, index in perfect_subtrees(0, size)
    ]


def compact_range_extend(
    old_size: int, border: Sequence[bytes], leaves: Sequence[bytes]
) -> list[bytes]:
    """The left border of the tree of old_size + len(leaves), from the border at old_size and
    the leaf hashes that follow it, in order (RFC 9162 §2.1.1): each leaf merges with the
    border's equal subtrees, as a binary counter carries. Lets a reader go through a long range
    batch by batch holding only a border."""
    heights = [height for height, _ in perfect_subtrees(0, old_size)]
    if len(border) != len(heights):
        raise ProofError(
            f"a tree of size {old_size} has {len(heights)} border hashes, not {len(border)}"
        )
    for position, node in enumerate(border):
        _check_hash(node, f"border hash {position}")
    stack = list(zip(heights, border, strict=True))
    for position, leaf in enumerate(leaves):
        _check_hash(leaf, f"leaf hash {position}")
        height, node = 0, leaf
        while stack and stack[-1][0] == height:
            _, left = stack.pop()
            node, height = node_hash(left, node), height + 1
        stack.append((height, node))
    return [node for _, node in stack]


def root_from_compact_range(
    old_size: int, border: Sequence[bytes], leaves: Sequence[bytes]
) -> bytes:
    """MTH(D[0:old_size + len(leaves)]) from the left border of the tree of old_size and the leaf
    hashes that follow it, in order (RFC 9162 §2.1.1)."""
    extended = compact_range_extend(old_size, border, leaves)
    return fold_right(extended) if extended else EMPTY_ROOT


def verify_completeness(
    old_size: int,
    old_root: bytes,
    border: Sequence[bytes],
    leaves: Sequence[bytes],
    new_root: bytes,
) -> None:
    """Checks that `leaves` are exactly the leaves between a tree of old_size with root old_root
    and the tree with root new_root (of size old_size + len(leaves)): none left out, none added,
    none reordered. `border` (the compact range at old_size) must give old_root, and extended by
    the leaves must give new_root (RFC 9162 §2.1.1)."""
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    if root_from_compact_range(old_size, border, []) != old_root:
        raise ProofError(f"the border hashes do not give the root of tree size {old_size}")
    new_size = old_size + len(leaves)
    if root_from_compact_range(old_size, border, leaves) != new_root:
        raise ProofError(
            f"the {len(leaves)} leaves after tree size {old_size} do not give the root of tree "
            f"size {new_size}"
        )
