"""Completeness of a log range: the compact range at a and the leaves a..b give the root at b."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from veridict_verify import merkle

LEAVES = [hashlib.sha256(b"leaf %d" % n).digest() for n in range(700)]
SAMPLED = hypothesis_settings(max_examples=150, deadline=None, derandomize=True)

# (a, b) with 0 <= a <= b <= 700: a tree of size a grown by the leaves a..b.
ranges = st.integers(min_value=0, max_value=700).flatmap(
    lambda b: st.tuples(st.integers(min_value=0, max_value=b), st.just(b))
)


def border(size: int) -> list[bytes]:
    return merkle.compact_range(size, merkle.memory_range_hash(LEAVES))


def root(size: int) -> bytes:
    return merkle.root_from_leaves(LEAVES[:size])


@SAMPLED
@given(ranges)
def test_the_compact_range_and_the_leaves_reproduce_the_root(sizes):
    a, b = sizes
    assert merkle.root_from_compact_range(a, border(a), []) == root(a)
    assert merkle.root_from_compact_range(a, border(a), LEAVES[a:b]) == root(b)
    merkle.verify_completeness(a, root(a), border(a), LEAVES[a:b], root(b))


@SAMPLED
@given(ranges.filter(lambda s: s[1] > s[0]), st.data())
def test_leaving_out_a_leaf_fails(sizes, data):
    a, b = sizes
    at = data.draw(st.integers(min_value=a, max_value=b - 1))
    leaves = LEAVES[a:at] + LEAVES[at + 1 : b]
    with pytest.raises(merkle.ProofError, match="do not give the root"):
        merkle.verify_completeness(a, root(a), border(a), leaves, root(b))


@SAMPLED
@given(ranges, st.data())
def test_adding_a_leaf_fails(sizes, data):
    a, b = sizes
    at = data.draw(st.integers(min_value=a, max_value=b))
    leaves = LEAVES[a:at] + [hashlib.sha256(b"another system's leaf").digest()] + LEAVES[at:b]
    with pytest.raises(merkle.ProofError, match="do not give the root"):
        merkle.verify_completeness(a, root(a), border(a), leaves, root(b))


@SAMPLED
@given(ranges.filter(lambda s: s[1] - s[0] >= 2), st.data())
def test_reordering_two_leaves_fails(sizes, data):
    a, b = sizes
    i = data.draw(st.integers(min_value=a, max_value=b - 2))
    j = data.draw(st.integers(min_value=i + 1, max_value=b - 1))
    leaves = list(LEAVES[a:b])
    leaves[i - a], leaves[j - a] = leaves[j - a], leaves[i - a]
    with pytest.raises(merkle.ProofError, match="do not give the root"):
        merkle.verify_completeness(a, root(a), border(a), leaves, root(b))


@SAMPLED
@given(ranges.filter(lambda s: s[0] > 0), st.data())
def test_a_wrong_compact_range_fails(sizes, data):
    a, b = sizes
    hashes = border(a)
    at = data.draw(st.integers(min_value=0, max_value=len(hashes) - 1))
    hashes[at] = hashlib.sha256(hashes[at]).digest()
    with pytest.raises(merkle.ProofError, match="border hashes do not give"):
        merkle.verify_completeness(a, root(a), hashes, LEAVES[a:b], root(b))


@SAMPLED
@given(ranges)
def test_a_compact_range_of_another_size_is_refused(sizes):
    a, b = sizes
    with pytest.raises(merkle.ProofError, match="border hashes"):
        merkle.root_from_compact_range(a, [*border(a), LEAVES[0]], LEAVES[a:b])


def test_cutting_the_range_short_fails():
    with pytest.raises(merkle.ProofError, match="do not give the root"):
        merkle.verify_completeness(300, root(300), border(300), LEAVES[300:499], root(500))


@SAMPLED
@given(ranges)
def test_extending_the_compact_range_by_the_leaves_gives_the_compact_range_at_b(sizes):
    a, b = sizes
    assert merkle.compact_range_extend(a, border(a), LEAVES[a:b]) == border(b)
