"""Skipped seqs of a batch as sorted, merged [first, last] ranges, and positions around them.

A rolled-back bulk of n records leaves n consecutive seqs that no entry will ever hold; stored one
by one they made the next batch's row, and every leaf-index lookup, as long as the gap. As ranges
a gap costs one pair, and lookups bisect over the ranges: O(log ranges), whatever the gap's size.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate


def seq_ranges_of_gaps(*, after_seq: int, present: Iterable[int]) -> list[list[int]]:
    """The [first, last] ranges of the seqs missing before each of `present` (ascending), counting
    from after_seq + 1: the ranges a batch covering them stores. One pass over `present`."""
    ranges: list[list[int]] = []
    expected = after_seq + 1
    for seq in present:
        if seq > expected:
            ranges.append([expected, seq - 1])
        expected = seq + 1
    return ranges


def seq_ranges_merge(seqs: Iterable[int]) -> list[list[int]]:
    """Single seqs in any order as sorted, merged [first, last] ranges (for old rows and tests)."""
    ranges: list[list[int]] = []
    for seq in sorted(set(seqs)):
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def seq_ranges_well_formed(ranges: object, *, first_seq: int, last_seq: int) -> bool:
    """True if `ranges` is what sealing writes: [first, last] pairs of integers inside
    [first_seq, last_seq), ascending, and merged (at least one seq between two ranges)."""
    if not isinstance(ranges, list):
        return False
    previous_last = first_seq - 2
    for pair in ranges:
        if not (
            isinstance(pair, list)
            and len(pair) == 2
            and all(isinstance(seq, int) and not isinstance(seq, bool) for seq in pair)
        ):
            return False
        first, last = pair
        if not (previous_last + 1 < first <= last < last_seq):
            return False
        previous_last = last
    return True


@dataclass(frozen=True)
class SkippedSeqs:
    """A batch's skipped ranges with running totals, for lookups by bisection.

    `firsts[i]`, `lasts[i]` bound range i; `before[i]` counts the skipped seqs in ranges 0..i-1
    (so `before[-1]` is the total); `leaves_before[i]` counts the batch's leaves before range i.
    """

    first_seq: int
    firsts: tuple[int, ...]
    lasts: tuple[int, ...]
    before: tuple[int, ...] = field(repr=False)
    leaves_before: tuple[int, ...] = field(repr=False)

    @classmethod
    def of(cls, *, first_seq: int, ranges: Sequence[Sequence[int]]) -> SkippedSeqs:
        firsts = tuple(first for first, _ in ranges)
        lasts = tuple(last for _, last in ranges)
        before = tuple(accumulate((last - first + 1 for first, last in ranges), initial=0))
        leaves_before = tuple(
            first - first_seq - skipped for first, skipped in zip(firsts, before, strict=False)
        )
        return cls(first_seq, firsts, lasts, before, leaves_before)

    @property
    def total(self) -> int:
        return self.before[-1]

    def count_below(self, seq: int) -> int:
        """How many skipped seqs are smaller than seq."""
        # Ranges starting below seq; the last of them may reach seq or beyond.
        started = bisect.bisect_left(self.firsts, seq)
        if started == 0:
            return 0
        partial = min(self.lasts[started - 1], seq - 1) - self.firsts[started - 1] + 1
        return self.before[started - 1] + partial

    def contains(self, seq: int) -> bool:
        at = bisect.bisect_right(self.firsts, seq) - 1
        return at >= 0 and seq <= self.lasts[at]

    def seq_of_leaf(self, offset: int) -> int:
        """The seq of the batch's offset-th leaf (0-based): first_seq + offset, moved past every
        range that starts before it."""
        passed = bisect.bisect_right(self.leaves_before, offset)
        return self.first_seq + offset + self.before[passed]

    def covered(self, last_seq: int) -> Iterator[int]:
        """The seqs from first_seq to last_seq that are not skipped, ascending, without visiting
        the skipped ones."""
        seq = self.first_seq
        for first, last in zip(self.firsts, self.lasts, strict=True):
            yield from range(seq, first)
            seq = last + 1
        yield from range(seq, last_seq + 1)
