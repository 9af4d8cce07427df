"""Merkle proofs against a recursive model written here from RFC 9162 §2.1's definitions."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from veridict_verify import merkle

MAX_EXHAUSTIVE = 64
MAX_SAMPLED = 3000
LEAVES = [hashlib.sha256(b"\x00" + n.to_bytes(4, "big")).digest() for n in range(MAX_SAMPLED + 1)]
SAMPLED = hypothesis_settings(max_examples=120, deadline=None, derandomize=True)


# --- The model: RFC 9162 §2.1 read literally, recursive, with its own hashing. ---


def model_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def model_split(n: int) -> int:
    """k: the largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes (§2.1.1): the empty hash, a single leaf, or the split at k."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = model_split(len(leaves))
    return model_node(mth(leaves[:k]), mth(leaves[k:]))


@functools.cache
def model_range(lo: int, hi: int) -> bytes:
    """MTH(LEAVES[lo:hi]), cached: the exhaustive loops ask for the same ranges many times."""
    if hi - lo == 1:
        return LEAVES[lo]
    k = model_split(hi - lo)
    return model_node(model_range(lo, lo + k), model_range(lo + k, hi))


def model_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of §2.1.3.1, m counted from lo."""
    if hi - lo == 1:
        return []
    k = model_split(hi - lo)
    if m < k:
        return model_path(m, lo, lo + k) + [model_range(lo + k, hi)]
    return model_path(m - k, lo + k, hi) + [model_range(lo, lo + k)]


def model_subproof(m: int, lo: int, hi: int, whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) of §2.1.4.1."""
    if m == hi - lo:
        return [] if whole else [model_range(lo, hi)]
    k = model_split(hi - lo)
    if m <= k:
        return model_subproof(m, lo, lo + k, whole) + [model_range(lo + k, hi)]
    return model_subproof(m - k, lo + k, hi, False) + [model_range(lo, lo + k)]


def model_consistency_proof(m: int, n: int) -> list[bytes]:
    return model_subproof(m, 0, n, True)


def model_root_from_path(m: int, width: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """Undoes PATH: the root a leaf and a path of this shape imply, None if the length is wrong."""
    if width == 1:
        return leaf if not proof else None
    if not proof:
        return None
    k = model_split(width)
    if m < k:
        below = model_root_from_path(m, k, leaf, proof[:-1])
        return None if below is None else model_node(below, proof[-1])
    below = model_root_from_path(m - k, width - k, leaf, proof[:-1])
    return None if below is None else model_node(proof[-1], below)


def model_accepts_inclusion(
    index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> bool:
    if not 0 <= index < size:
        return False
    return model_root_from_path(index, size, leaf, proof) == root


def model_roots_from_subproof(
    m: int, width: int, whole: bool, old_root: bytes, proof: list[bytes]
) -> tuple[bytes, bytes] | None:
    """Undoes SUBPROOF: the (old, new) roots it implies, None if the length is wrong."""
    if m == width:
        if whole:
            return (old_root, old_root) if not proof else None
        return (proof[0], proof[0]) if len(proof) == 1 else None
    if not proof:
        return None
    k = model_split(width)
    if m <= k:
        below = model_roots_from_subproof(m, k, whole, old_root, proof[:-1])
        return None if below is None else (below[0], model_node(below[1], proof[-1]))
    below = model_roots_from_subproof(m - k, width - k, False, old_root, proof[:-1])
    return (
        None
        if below is None
        else (model_node(proof[-1], below[0]), model_node(proof[-1], below[1]))
    )


def model_accepts_consistency(
    m: int, n: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> bool:
    if not 0 < m <= n:
        return False
    return model_roots_from_subproof(m, n, True, old_root, proof) == (old_root, new_root)


# --- Helpers on our implementation. ---


def accepts(verify: Callable[..., None], *args: object) -> bool:
    try:
        verify(*args)
    except merkle.ProofError:
        return False
    return True


def flipped(value: bytes, bit: int) -> bytes:
    out = bytearray(value)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


RANGE_HASH = merkle.memory_range_hash(LEAVES)


@functools.cache
def root(size: int) -> bytes:
    return merkle.root_from_leaves(LEAVES[:size])


def size_mutations(size: int) -> set[int]:
    return {size - 1, size + 1, size * 2, size // 2, size + 7, 1, MAX_EXHAUSTIVE + 1, 2**40} - {
        size
    }


EXHAUSTIVE_INCLUSION = [(i, n) for n in range(1, MAX_EXHAUSTIVE + 1) for i in range(n)]
EXHAUSTIVE_CONSISTENCY = [(m, n) for n in range(1, MAX_EXHAUSTIVE + 1) for m in range(1, n + 1)]


# --- Hashing. ---


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 7, 8, 9, 255, 256, 257, 1000, MAX_SAMPLED])
def test_root_from_leaves_is_the_recursive_mth_of_the_rfc(size: int):
    assert merkle.root_from_leaves(LEAVES[:size]) == mth(LEAVES[:size])


@SAMPLED
@given(st.lists(st.binary(min_size=32, max_size=32), max_size=70))
def test_root_from_leaves_is_the_mth_of_any_leaf_hashes(leaf_hashes: list[bytes]):
    assert merkle.root_from_leaves(leaf_hashes) == mth(leaf_hashes)


def test_leaf_and_node_hashes_carry_the_rfc_domain_prefixes():
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        merkle.node_hash(b"a" * 32, b"b" * 32)
        == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )
    assert merkle.EMPTY_ROOT == hashlib.sha256(b"").digest()


def rfc_ranges() -> set[tuple[int, int]]:
    """Every range MTH(D[lo:hi]) that PATH and SUBPROOF ask for in trees of up to 64 leaves."""
    asked: set[tuple[int, int]] = set()

    def record(lo: int, hi: int) -> bytes:
        asked.add((lo, hi))
        return bytes(32)

    for i, n in EXHAUSTIVE_INCLUSION:
        merkle.inclusion_proof(i, n, record)
    for m, n in EXHAUSTIVE_CONSISTENCY:
        merkle.consistency_proof(m, n, record)
    return asked


def test_proof_generation_asks_only_for_aligned_ranges():
    # A stored tree answers a range from perfect subtrees, which is only the range's MTH when lo is
    # a multiple of a power of two at least as large as the range.
    for lo, hi in rfc_ranges():
        span = 1 << (hi - lo - 1).bit_length()
        assert 0 <= lo < hi and lo % span == 0, (lo, hi)


def test_perfect_subtrees_folded_right_give_the_mth_of_every_aligned_range():
    aligned = {(lo, hi) for hi in range(1, 2 * MAX_EXHAUSTIVE + 3) for lo in range(hi)}
    aligned = {(lo, hi) for lo, hi in aligned if lo % (1 << (hi - lo - 1).bit_length()) == 0}
    assert rfc_ranges() <= aligned
    for lo, hi in sorted(aligned):
        subtrees = merkle.perfect_subtrees(lo, hi)
        position = lo
        for height, index in subtrees:
            # contiguous, aligned, and never taller than the one before it
            assert index << height == position
            position += 1 << height
        assert position == hi
        assert [h for h, _ in subtrees] == sorted((h for h, _ in subtrees), reverse=True)
        hashes = [model_range(i << h, (i + 1) << h) for h, i in subtrees]
        assert merkle.fold_right(hashes) == model_range(lo, hi), (lo, hi)


# --- Inclusion. ---


def test_every_inclusion_proof_up_to_64_leaves_is_the_rfc_path_and_verifies():
    for i, n in EXHAUSTIVE_INCLUSION:
        proof = merkle.inclusion_proof(i, n, RANGE_HASH)
        assert proof == model_path(i, 0, n), (i, n)
        merkle.verify_inclusion(i, n, LEAVES[i], proof, root(n))


def test_every_flipped_bit_in_an_inclusion_proof_leaf_or_root_is_rejected():
    for i, n in EXHAUSTIVE_INCLUSION:
        proof = merkle.inclusion_proof(i, n, RANGE_HASH)
        for position in range(len(proof)):
            bit = (i * 31 + n * 7 + position * 101) % 256  # every hash of every proof, varied bits
            tampered = proof[:position] + [flipped(proof[position], bit)] + proof[position + 1 :]
            assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], tampered, root(n)), (
                i,
                n,
                position,
            )
        assert not accepts(
            merkle.verify_inclusion, i, n, flipped(LEAVES[i], n % 256), proof, root(n)
        )
        assert not accepts(
            merkle.verify_inclusion, i, n, LEAVES[i], proof, flipped(root(n), i % 256)
        )


def test_every_bit_of_one_proof_matters():
    i, n = 21, 45
    proof = merkle.inclusion_proof(i, n, RANGE_HASH)
    for position in range(len(proof)):
        for bit in range(256):
            tampered = proof[:position] + [flipped(proof[position], bit)] + proof[position + 1 :]
            assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], tampered, root(n))


def test_an_inclusion_proof_never_verifies_for_another_index_of_the_same_tree():
    for i, n in EXHAUSTIVE_INCLUSION:
        proof = merkle.inclusion_proof(i, n, RANGE_HASH)
        for other in [*range(n), n, n + 1, -1]:
            if other != i:
                assert not accepts(merkle.verify_inclusion, other, n, LEAVES[i], proof, root(n)), (
                    i,
                    n,
                    other,
                )


def test_a_truncated_or_extended_inclusion_proof_is_rejected():
    for i, n in EXHAUSTIVE_INCLUSION:
        proof = merkle.inclusion_proof(i, n, RANGE_HASH)
        variants = [proof + [proof[-1] if proof else LEAVES[0]], [LEAVES[0], *proof]]
        if proof:
            variants += [proof[:-1], proof[1:]]
        for variant in variants:
            assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], variant, root(n)), (
                i,
                n,
                variant,
            )
            # no root at all, not merely a wrong one: a caller may use the implied root on its own
            assert not accepts(merkle.root_from_inclusion_proof, i, n, LEAVES[i], variant), (
                i,
                n,
                variant,
            )


def test_an_inclusion_proof_is_rejected_against_the_root_of_another_size():
    for i, n in EXHAUSTIVE_INCLUSION:
        proof = merkle.inclusion_proof(i, n, RANGE_HASH)
        for other in (n - 1, n + 1, MAX_EXHAUSTIVE + 1):
            assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], proof, root(other)), (
                i,
                n,
                other,
            )


def test_a_wrong_tree_size_is_rejected_unless_its_audit_path_has_the_same_shape():
    """The proof binds the leaf to the root; the size only sets the shape of the path. Where two
    sizes give a leaf paths of the same shape (index 0 in sizes 5 and 6, say), no verifier can tell
    them apart: that is why a receipt takes the size from the signed checkpoint beside the root."""
    accepted = rejected = 0
    for i, n in EXHAUSTIVE_INCLUSION:
        proof = merkle.inclusion_proof(i, n, RANGE_HASH)
        for other in size_mutations(n):
            ours = accepts(merkle.verify_inclusion, i, other, LEAVES[i], proof, root(n))
            assert ours == model_accepts_inclusion(i, other, LEAVES[i], proof, root(n)), (
                i,
                n,
                other,
            )
            accepted, rejected = accepted + ours, rejected + (not ours)
            if other <= i:
                assert not ours, (i, n, other)
    assert accepted and rejected  # both outcomes occur: the model is not vacuous either way
    assert accepts(
        merkle.verify_inclusion, 0, 6, LEAVES[0], merkle.inclusion_proof(0, 5, RANGE_HASH), root(5)
    )


def test_an_inclusion_proof_with_a_hash_that_is_not_32_bytes_is_rejected():
    proof = merkle.inclusion_proof(3, 10, RANGE_HASH)
    for bad in (proof[0][:31], proof[0] + b"\x00", b""):
        assert not accepts(merkle.verify_inclusion, 3, 10, LEAVES[3], [bad, *proof[1:]], root(10))
    assert not accepts(merkle.verify_inclusion, 3, 10, LEAVES[3][:31], proof, root(10))
    assert not accepts(merkle.verify_inclusion, 3, 10, LEAVES[3], proof, root(10)[:31])


def test_no_inclusion_proof_exists_for_an_index_outside_the_tree():
    for index, size in [(0, 0), (5, 5), (-1, 5)]:
        with pytest.raises(merkle.ProofError):
            merkle.inclusion_proof(index, size, RANGE_HASH)


@SAMPLED
@given(st.data())
def test_sampled_inclusion_proofs_in_trees_up_to_3000_leaves_verify_and_resist_tampering(data):
    n = data.draw(st.integers(1, MAX_SAMPLED), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = merkle.inclusion_proof(i, n, RANGE_HASH)
    assert proof == model_path(i, 0, n)
    merkle.verify_inclusion(i, n, LEAVES[i], proof, root(n))
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bit = data.draw(st.integers(0, 255), label="bit")
        tampered = proof[:position] + [flipped(proof[position], bit)] + proof[position + 1 :]
        assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], tampered, root(n))
        assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], proof[:-1], root(n))
    other = data.draw(
        st.integers(0, n - 1).filter(lambda j: j != i) if n > 1 else st.just(n), label="other"
    )
    assert not accepts(merkle.verify_inclusion, other, n, LEAVES[i], proof, root(n))
    assert not accepts(merkle.verify_inclusion, i, n, LEAVES[i], proof + [LEAVES[0]], root(n))
    other_size = data.draw(st.integers(1, MAX_SAMPLED + 1), label="other size")
    assert accepts(merkle.verify_inclusion, i, other_size, LEAVES[i], proof, root(n)) == (
        model_accepts_inclusion(i, other_size, LEAVES[i], proof, root(n))
    )


# --- Consistency. ---


def test_every_consistency_proof_up_to_64_leaves_is_the_rfc_proof_and_verifies():
    for m, n in EXHAUSTIVE_CONSISTENCY:
        proof = merkle.consistency_proof(m, n, RANGE_HASH)
        assert proof == model_consistency_proof(m, n), (m, n)
        merkle.verify_consistency(m, n, root(m), root(n), proof)


def test_every_flipped_bit_in_a_consistency_proof_or_its_roots_is_rejected():
    for m, n in EXHAUSTIVE_CONSISTENCY:
        proof = merkle.consistency_proof(m, n, RANGE_HASH)
        for position in range(len(proof)):
            bit = (m * 13 + n * 5 + position * 97) % 256
            tampered = proof[:position] + [flipped(proof[position], bit)] + proof[position + 1 :]
            assert not accepts(merkle.verify_consistency, m, n, root(m), root(n), tampered), (
                m,
                n,
                position,
            )
        assert not accepts(
            merkle.verify_consistency, m, n, flipped(root(m), n % 256), root(n), proof
        )
        assert not accepts(
            merkle.verify_consistency, m, n, root(m), flipped(root(n), m % 256), proof
        )


def test_a_truncated_or_extended_consistency_proof_is_rejected():
    for m, n in EXHAUSTIVE_CONSISTENCY:
        proof = merkle.consistency_proof(m, n, RANGE_HASH)
        variants = [proof + [LEAVES[0]], [LEAVES[0], *proof], proof + [root(m)]]
        if proof:
            variants += [proof[:-1], proof[1:], []]
        for variant in variants:
            assert not accepts(merkle.verify_consistency, m, n, root(m), root(n), variant), (m, n)


def test_swapped_roots_are_rejected():
    for m, n in EXHAUSTIVE_CONSISTENCY:
        if m == n:
            continue
        proof = merkle.consistency_proof(m, n, RANGE_HASH)
        assert not accepts(merkle.verify_consistency, m, n, root(n), root(m), proof), (m, n)
        assert not accepts(merkle.verify_consistency, n, m, root(n), root(m), proof), (m, n)


def test_wrong_sizes_in_a_consistency_check_are_rejected_unless_the_proof_has_the_same_shape():
    accepted = rejected = 0
    for m, n in EXHAUSTIVE_CONSISTENCY:
        proof = merkle.consistency_proof(m, n, RANGE_HASH)
        claims = {(mm, n) for mm in size_mutations(m)} | {(m, nn) for nn in size_mutations(n)}
        claims |= {(m - 1, n - 1), (m + 1, n + 1), (0, n), (m, 0)}
        for old, new in claims - {(m, n)}:
            ours = accepts(merkle.verify_consistency, old, new, root(m), root(n), proof)
            assert ours == model_accepts_consistency(old, new, root(m), root(n), proof), (
                m,
                n,
                old,
                new,
            )
            accepted, rejected = accepted + ours, rejected + (not ours)
            if not 0 < old <= new:
                assert not ours, (m, n, old, new)
    assert accepted and rejected


def test_a_consistency_proof_between_equal_sizes_is_empty_and_needs_equal_roots():
    for n in range(1, 10):
        assert merkle.consistency_proof(n, n, RANGE_HASH) == []
        merkle.verify_consistency(n, n, root(n), root(n), [])
        assert not accepts(merkle.verify_consistency, n, n, root(n), root(n + 1), [])
        assert not accepts(merkle.verify_consistency, n, n, root(n), root(n), [root(n)])


def test_nothing_is_consistent_with_the_empty_tree_by_proof():
    with pytest.raises(merkle.ProofError):
        merkle.consistency_proof(0, 5, RANGE_HASH)
    assert not accepts(merkle.verify_consistency, 0, 5, merkle.EMPTY_ROOT, root(5), [])
    assert not accepts(merkle.verify_consistency, 0, 0, merkle.EMPTY_ROOT, merkle.EMPTY_ROOT, [])


@SAMPLED
@given(st.data())
def test_sampled_consistency_proofs_up_to_3000_leaves_verify_and_resist_tampering(data):
    n = data.draw(st.integers(1, MAX_SAMPLED), label="new size")
    m = data.draw(st.integers(1, n), label="old size")
    proof = merkle.consistency_proof(m, n, RANGE_HASH)
    assert proof == model_consistency_proof(m, n)
    merkle.verify_consistency(m, n, root(m), root(n), proof)
    if proof:
        position = data.draw(st.integers(0, len(proof) - 1), label="position")
        bit = data.draw(st.integers(0, 255), label="bit")
        tampered = proof[:position] + [flipped(proof[position], bit)] + proof[position + 1 :]
        assert not accepts(merkle.verify_consistency, m, n, root(m), root(n), tampered)
        assert not accepts(merkle.verify_consistency, m, n, root(m), root(n), proof[:-1])
        assert not accepts(merkle.verify_consistency, m, n, root(n), root(m), proof)
    assert not accepts(merkle.verify_consistency, m, n, root(m), root(n), proof + [LEAVES[0]])
    old = data.draw(st.integers(0, MAX_SAMPLED + 1), label="claimed old size")
    new = data.draw(st.integers(0, MAX_SAMPLED + 1), label="claimed new size")
    assert accepts(merkle.verify_consistency, old, new, root(m), root(n), proof) == (
        model_accepts_consistency(old, new, root(m), root(n), proof)
    )
