"""Skipped seqs as ranges: positions agree with counting seq by seq; a huge gap costs nothing."""

from __future__ import annotations

import time

from hypothesis import given
from hypothesis import strategies as st

from timestamping.models import Batch
from timestamping.seq_ranges import (
    SkippedSeqs,
    seq_ranges_merge,
    seq_ranges_of_gaps,
    seq_ranges_well_formed,
)

FIRST_SEQ = 1000

# A batch's seqs (first_seq .. last_seq) and the ones skipped among them; last_seq is never skipped
# (a batch ends at its last entry).
batches = st.integers(min_value=2, max_value=300).flatmap(
    lambda length: st.tuples(
        st.just(FIRST_SEQ + length - 1),
        st.sets(st.integers(min_value=FIRST_SEQ, max_value=FIRST_SEQ + length - 2)),
    )
)


def batch_of(last_seq: int, skipped: set[int], prev_tree_size: int = 77) -> Batch:
    return Batch(
        prev_tree_size=prev_tree_size,
        first_seq=FIRST_SEQ,
        last_seq=last_seq,
        tree_size=prev_tree_size + (last_seq - FIRST_SEQ + 1 - len(skipped)),
        skipped_ranges=seq_ranges_merge(skipped),
    )


@given(batches)
def test_leaf_index_of_agrees_with_counting_the_skipped_seqs_one_by_one(batch_seqs):
    last_seq, skipped = batch_seqs
    batch = batch_of(last_seq, skipped)
    for seq in range(FIRST_SEQ, last_seq + 2):
        naive = batch.prev_tree_size + (seq - FIRST_SEQ) - sum(1 for s in skipped if s < seq)
        assert batch.leaf_index_of(seq) == naive


@given(batches)
def test_seq_at_gives_back_each_covered_seq_from_its_leaf_index(batch_seqs):
    last_seq, skipped = batch_seqs
    batch = batch_of(last_seq, skipped)
    covered = [seq for seq in range(FIRST_SEQ, last_seq + 1) if seq not in skipped]
    assert [batch.seq_at(batch.prev_tree_size + i) for i in range(len(covered))] == covered
    assert list(batch.skipped.covered(last_seq)) == covered
    assert [seq for seq in range(FIRST_SEQ, last_seq + 1) if batch.skipped.contains(seq)] == sorted(
        skipped
    )
    assert batch.skipped.total == len(skipped)


@given(batches)
def test_the_ranges_sealing_writes_are_the_merged_gaps_and_well_formed(batch_seqs):
    last_seq, skipped = batch_seqs
    present = [seq for seq in range(FIRST_SEQ, last_seq + 1) if seq not in skipped]
    ranges = seq_ranges_of_gaps(after_seq=FIRST_SEQ - 1, present=present)
    assert ranges == seq_ranges_merge(skipped)
    assert [seq for first, last in ranges for seq in range(first, last + 1)] == sorted(skipped)
    assert seq_ranges_well_formed(ranges, first_seq=FIRST_SEQ, last_seq=last_seq)


def test_ranges_that_overlap_touch_or_leave_the_batch_are_not_well_formed():
    bounds = {"first_seq": 10, "last_seq": 20}
    assert seq_ranges_well_formed([[10, 11], [13, 19]], **bounds)
    assert not seq_ranges_well_formed([[10, 11], [12, 13]], **bounds)  # not merged
    assert not seq_ranges_well_formed([[13, 14], [10, 11]], **bounds)  # not ascending
    assert not seq_ranges_well_formed([[10, 12], [11, 13]], **bounds)  # overlapping
    assert not seq_ranges_well_formed([[9, 11]], **bounds)  # before first_seq
    assert not seq_ranges_well_formed([[15, 20]], **bounds)  # reaches last_seq
    assert not seq_ranges_well_formed([[12, 11]], **bounds)  # backwards
    assert not seq_ranges_well_formed([12, 13], **bounds)  # the old list of seqs
    assert not seq_ranges_well_formed([[12, True]], **bounds)
    assert not seq_ranges_well_formed({"12": 13}, **bounds)


def test_a_gap_of_a_trillion_seqs_is_one_range_and_placed_in_microseconds():
    # Counted seq by seq, this batch would take hours to build or to look anything up in.
    gap = 10**12
    present = [FIRST_SEQ, FIRST_SEQ + gap + 1, FIRST_SEQ + gap + 2]
    ranges = seq_ranges_of_gaps(after_seq=FIRST_SEQ - 1, present=present)
    assert ranges == [[FIRST_SEQ + 1, FIRST_SEQ + gap]]
    batch = Batch(
        prev_tree_size=0, first_seq=FIRST_SEQ, last_seq=present[-1], skipped_ranges=ranges
    )
    started = time.perf_counter()
    assert [batch.leaf_index_of(seq) for seq in present] == [0, 1, 2]
    assert [batch.seq_at(index) for index in range(3)] == present
    assert list(batch.skipped.covered(present[-1])) == present
    # Microseconds of work; a walk over the gap would take hours. Room for a loaded machine.
    assert time.perf_counter() - started < 1


def test_skipped_seqs_bisect_over_many_ranges():
    ranges = [[n * 10, n * 10 + 4] for n in range(1, 10_001)]
    skipped = SkippedSeqs.of(first_seq=0, ranges=ranges)
    assert skipped.total == 50_000
    assert skipped.count_below(55) == 25
    assert skipped.seq_of_leaf(12) == 17  # leaves are seqs 0-9, 15-19, 25-29: the 13th is 17
