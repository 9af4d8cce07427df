"""The inclusion path the entry page draws, for any tree size and leaf: the proof's hashes with the
ranges the RFC's split gives, leading to the root."""

from __future__ import annotations

import hashlib
from unittest import mock

from hypothesis import given
from hypothesis import strategies as st
from veridict_verify import merkle

from portal import selectors
from portal.svg import inclusion_path_svg
from timestamping.models import Batch, Entry


@st.composite
def size_and_index(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(min_value=1, max_value=300))
    return size, draw(st.integers(min_value=0, max_value=size - 1))


@given(size_and_index())
def test_the_path_partitions_the_tree_and_leads_to_the_root(case: tuple[int, int]) -> None:
    size, index = case
    leaves = [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(size)]
    root = merkle.root_from_leaves(leaves)
    batch = Batch(prev_tree_size=0, first_seq=1, tree_size=size, root=root, skipped_ranges=[])
    entry = Entry(seq=index + 1, leaf_hash=leaves[index])
    proof = merkle.inclusion_proof(index, size, merkle.memory_range_hash(leaves))
    with mock.patch.object(selectors.tree, "inclusion_proof", return_value=proof):
        path = selectors.inclusion_path(entry=entry, batch=batch)

    assert path.matches and path.root == root
    assert [step.sibling for step in path.steps] == proof
    covered = (index, index + 1)
    for step in path.steps:
        assert step.node_range == covered
        # The node and its sibling are adjacent halves of the parent's range, as the RFC splits.
        low, high = sorted([step.node_range, step.sibling_range])
        assert low[1] == high[0]
        assert step.sibling_on_left == (step.sibling_range < step.node_range)
        assert step.sibling == merkle.root_from_leaves(leaves[slice(*step.sibling_range)])
        assert step.parent == merkle.root_from_leaves(leaves[low[0] : high[1]])
        covered = (low[0], high[1])
    assert covered == (0, size)
    svg = inclusion_path_svg(path)
    assert svg.count('data-role="sibling"') == len(proof)
    assert f'data-hash="{root.hex()}"' in svg
