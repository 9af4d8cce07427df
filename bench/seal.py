"""Sealing throughput: batch_seal of 100,000 pending entries against hashing them in memory."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence

from veridict_verify import merkle

from bench import (
    Figure,
    entries_copy,
    entries_make,
    log_ensure,
    log_mark,
    log_revert,
    median,
    phases_timed,
    say,
)
from timestamping import keys, tree
from timestamping.models import Anchor, Batch, StreamHead
from timestamping.services import batch_seal, sealing

ENTRIES = 100_000
# Active system logs in the second figure: the same number of pending entries, spread over them.
STREAMS = 100
TARGET_RATIO = 0.25
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_SEAL_REPS", "3")))

# The phases of batch_seal, timed from outside by wrapping what it calls, in the order it runs them.
PHASES = [
    (sealing, "_committed_seq_watermark", "watermark (LOCK TABLE SHARE, max(seq))"),
    (sealing, "_pending_leaves", "read pending leaf hashes"),
    (tree, "tree_extend", "tree_extend (hash the new tiles)"),
    (sealing, "_tiles_insert", "tile insert (binary COPY)"),
    (tree, "tree_root", "root"),
    (tree, "consistency_proof", "consistency proof"),
    (keys, "sign", "checkpoint signing"),
    (Batch.objects, "create", "batch row insert"),
    (None, "_commit", "commit"),
    (sealing, "batch_anchor_builtin", "TSA stamp + anchor insert (after commit)"),
]
# With streams, what the sealer adds for them (stream_sizes runs inside _streams_extend and
# counts there; listed first so that the global tree's phases are not counted twice).
STREAM_PHASES = [
    (sealing, "_streams_extend", "stream trees: sizes, tiles, roots, marks"),
    (StreamHead.objects, "bulk_create", "stream head insert"),
    (sealing, "_pending_leaves", "read pending leaf hashes (and streams)"),
    (tree, "tree_extend", "tree_extend of the global tree"),
]
OTHER = "other (seal lock, previous batch, skipped seqs, header)"


def ceiling_root(canonicals: Sequence[bytes]) -> bytes:
    """The ceiling: leaf hashes and the RFC 9162 root of the leaves in one in-memory loop."""
    sha256 = hashlib.sha256
    return _root_of_hashes([sha256(b"\x00" + canonical).digest() for canonical in canonicals])


def ceiling_roots(canonicals: Sequence[bytes], streams: Sequence[str]) -> list[bytes]:
    """The ceiling with streams: what the sealer computes, in memory — the global root of all the
    leaves, then each stream's root of its own leaves (here each stream is new, as in a first
    seal, so its root is the root of its leaves of the batch)."""
    sha256 = hashlib.sha256
    leaf_hashes = [sha256(b"\x00" + canonical).digest() for canonical in canonicals]
    roots = [_root_of_hashes(leaf_hashes)]
    for offset in range(len(streams)):
        roots.append(_root_of_hashes(leaf_hashes[offset :: len(streams)]))
    return roots


def _root_of_hashes(level: list[bytes]) -> bytes:
    """Pairs combine level by level and an odd last node moves up unchanged, which gives the RFC's
    MTH (it splits at the largest power of two below the size) without recursion."""
    sha256 = hashlib.sha256
    while len(level) > 1:
        paired = [
            sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0] if level else merkle.EMPTY_ROOT


def _seal_check(batch: Batch | None, leaf_hashes: Sequence[bytes], old_size: int) -> None:
    """A figure is only worth printing for a seal that did its job."""
    assert batch is not None and batch.tree_size == old_size + len(leaf_hashes), batch
    assert Anchor.objects.filter(batch=batch).exists(), "the after-commit TSA stamp did not run"
    header = json.loads(bytes(batch.header))
    root = bytes(batch.root)
    if old_size:
        merkle.verify_consistency(
            old_size,
            batch.tree_size,
            bytes.fromhex(header["prev_root"]),
            root,
            [bytes.fromhex(step) for step in header["consistency"]],
        )
    for offset in (0, len(leaf_hashes) // 2, len(leaf_hashes) - 1):
        proof = tree.inclusion_proof(old_size + offset, batch.tree_size)
        merkle.verify_inclusion(
            old_size + offset, batch.tree_size, leaf_hashes[offset], proof, root
        )


def _pymerkle_seconds(canonicals: Sequence[bytes], expected_root: bytes) -> tuple[float, float]:
    """pymerkle's SqliteTree as a peer: seconds to append the same entries, then to get the root."""
    from pymerkle import SqliteTree

    with tempfile.TemporaryDirectory() as folder:
        peer = SqliteTree(os.path.join(folder, "pymerkle.db"))
        try:
            start = time.perf_counter()
            peer.append_entries(canonicals)
            appended = time.perf_counter()
            root = peer.get_root()
            rooted = time.perf_counter()
        finally:
            peer.close()
    assert root == expected_root, "pymerkle's root differs from the RFC 9162 root"
    return appended - start, rooted - appended


def _streams_check(batch: Batch, leaf_hashes: Sequence[bytes], streams: Sequence[str]) -> None:
    """Each stream got its own head, whose root is the root of that stream's leaves."""
    heads = dict(StreamHead.objects.filter(batch=batch).values_list("stream", "root"))
    assert len(heads) == len(streams), f"{len(heads)} stream heads for {len(streams)} streams"
    for offset, stream in enumerate(streams):
        expected = merkle.root_from_leaves(list(leaf_hashes[offset :: len(streams)]))
        assert bytes(heads[stream]) == expected, f"stream {stream}: wrong root"


def _stream_ids() -> list[str]:
    """Stream ids as the audit domain makes them: audit.vault.system_stream of a system's id."""
    from django.conf import settings
    from django.core.management import call_command

    from audit.vault import system_stream

    # The ids are keyed hashes under the master key; the bench keeps a throwaway one in its var/.
    if not settings.MASTER_KEY and not os.path.exists(settings.MASTER_KEY_FILE):
        call_command("create_master_key")
    # Of ids no AI system has (negative), so that no system log another benchmark left in the
    # bench database (evidence keeps one) already holds leaves: each stream starts empty.
    return [system_stream(system_id=-number) for number in range(1, STREAMS + 1)]


def _streams_seal(canonicals_plain: Sequence[bytes]) -> Figure:
    """The second figure: the same number of pending entries, each in one of STREAMS system logs
    (entry i in stream i mod STREAMS, its leaf naming it), sealed by batch_seal."""
    streams = _stream_ids()
    say(f"\n== seal with {STREAMS} streams: {ENTRIES:,} pending entries spread over them")
    clock = time.perf_counter()
    rows = entries_make(ENTRIES, streams=streams)
    say(f"made {ENTRIES:,} stream entries in {time.perf_counter() - clock:.1f} s")
    canonicals = [row[3] for row in rows]
    leaf_hashes = [row[4] for row in rows]
    expected = [merkle.root_from_leaves(leaf_hashes)] + [
        merkle.root_from_leaves(leaf_hashes[offset::STREAMS]) for offset in range(STREAMS)
    ]
    seal_seconds: list[float] = []
    ceiling_seconds: list[float] = []
    plain_seconds: list[float] = []
    breakdowns: list[dict[str, float]] = []
    for repetition in range(1, REPETITIONS + 1):
        start = time.perf_counter()
        roots = ceiling_roots(canonicals, streams)
        ceiling_seconds.append(time.perf_counter() - start)
        assert roots == expected
        start = time.perf_counter()
        ceiling_root(canonicals_plain)
        plain_seconds.append(time.perf_counter() - start)

        mark = log_mark()
        old_size = Batch.objects.get(number=mark.batch_number).tree_size if mark.batch_number else 0
        entries_copy(rows)
        try:
            with phases_timed(STREAM_PHASES) as spent:
                start = time.perf_counter()
                batch = batch_seal()
                seal_seconds.append(time.perf_counter() - start)
            breakdowns.append(dict(spent))
            _seal_check(batch, leaf_hashes, old_size)
            assert batch is not None
            _streams_check(batch, leaf_hashes, streams)
        finally:
            log_revert(mark)
        say(
            f"  rep {repetition}: seal {seal_seconds[-1]:.3f} s "
            f"= {ENTRIES / seal_seconds[-1]:,.0f} leaves/s over {STREAMS} streams; "
            f"ceiling (global + {STREAMS} stream roots) {ceiling_seconds[-1]:.3f} s; "
            f"ratio {ceiling_seconds[-1] / seal_seconds[-1]:.3f}; "
            f"ratio to the streamless ceiling {plain_seconds[-1] / seal_seconds[-1]:.3f}"
        )
    ratio = median(
        [ceiling / seal for ceiling, seal in zip(ceiling_seconds, seal_seconds, strict=True)]
    )
    plain_ratio = median(
        [plain / seal for plain, seal in zip(plain_seconds, seal_seconds, strict=True)]
    )
    seal_rate = ENTRIES / median(seal_seconds)
    ceiling_rate = ENTRIES / median(ceiling_seconds)
    say(
        f"seal with {STREAMS} streams median: {seal_rate:,.0f} leaves/s; ceiling "
        f"{ceiling_rate:,.0f} leaves/s; ratio {ratio:.3f} (to the streamless ceiling "
        f"{plain_ratio:.3f})"
    )
    say("where the stream work goes (median over repetitions):")
    for _, _, name in STREAM_PHASES:
        seconds = median([breakdown.get(name, 0.0) for breakdown in breakdowns])
        say(f"  {name:<58} {seconds * 1000:8.1f} ms  {seconds / median(seal_seconds):6.1%}")
    return Figure(
        f"seal: leaves/s over {STREAMS} streams, batch_seal",
        seal_rate,
        "/s",
        ceiling_rate,
        ratio,
        f">= {TARGET_RATIO} ratio",
        ratio >= TARGET_RATIO,
    )


def run() -> list[Figure]:
    log_ensure()
    say(f"\n== seal: batch_seal of {ENTRIES:,} pending entries, {REPETITIONS} repetitions")
    clock = time.perf_counter()
    rows = entries_make(ENTRIES)
    say(
        f"made {ENTRIES:,} entries with leaf_canonical and signed SETs "
        f"in {time.perf_counter() - clock:.1f} s"
    )
    canonicals = [row[3] for row in rows]
    leaf_hashes = [row[4] for row in rows]
    expected_root = merkle.root_from_leaves(leaf_hashes)

    seal_seconds: list[float] = []
    ceiling_seconds: list[float] = []
    breakdowns: list[dict[str, float]] = []
    for repetition in range(1, REPETITIONS + 1):
        # The ceiling runs next to each seal, so both see the same state of a noisy machine.
        start = time.perf_counter()
        root = ceiling_root(canonicals)
        ceiling_seconds.append(time.perf_counter() - start)
        assert root == expected_root

        mark = log_mark()
        old_size = Batch.objects.get(number=mark.batch_number).tree_size if mark.batch_number else 0
        clock = time.perf_counter()
        entries_copy(rows)
        copy_seconds = time.perf_counter() - clock
        try:
            with phases_timed(PHASES) as spent:
                start = time.perf_counter()
                batch = batch_seal()
                seal_seconds.append(time.perf_counter() - start)
            _seal_check(batch, leaf_hashes, old_size)
        finally:
            # Back to the cached log, so every repetition seals onto the same tree.
            log_revert(mark)
        spent[OTHER] = seal_seconds[-1] - sum(spent.values())
        breakdowns.append(dict(spent))
        say(
            f"  rep {repetition}: seal {seal_seconds[-1]:.3f} s "
            f"= {ENTRIES / seal_seconds[-1]:,.0f} leaves/s "
            f"onto tree size {old_size:,}; ceiling {ceiling_seconds[-1]:.3f} s; "
            f"ratio {ceiling_seconds[-1] / seal_seconds[-1]:.3f}  (COPY took {copy_seconds:.2f} s)"
        )

    ratios = [ceiling / seal for ceiling, seal in zip(ceiling_seconds, seal_seconds, strict=True)]
    seal_rate = ENTRIES / median(seal_seconds)
    ceiling_rate = ENTRIES / median(ceiling_seconds)
    ratio = median(ratios)
    say(
        f"seal median: {seal_rate:,.0f} leaves/s; ceiling {ceiling_rate:,.0f} leaves/s; "
        f"ratio {ratio:.3f}"
    )

    say("where batch_seal's time goes (median over repetitions):")
    total = median(seal_seconds)
    for name in [name for _, _, name in PHASES] + [OTHER]:
        seconds = median([breakdown.get(name, 0.0) for breakdown in breakdowns])
        say(f"  {name:<58} {seconds * 1000:8.1f} ms  {seconds / total:6.1%}")

    streams_figure = _streams_seal(canonicals)

    append_seconds, root_seconds = _pymerkle_seconds(canonicals, expected_root)
    peer_rate = ENTRIES / append_seconds
    say(
        f"pymerkle SqliteTree: append_entries {append_seconds:.3f} s = {peer_rate:,.0f} appends/s, "
        f"then get_root {root_seconds:.3f} s"
    )
    return [
        Figure(
            "seal: leaves/s, batch_seal end to end",
            seal_rate,
            "/s",
            ceiling_rate,
            ratio,
            f">= {TARGET_RATIO} ratio",
            ratio >= TARGET_RATIO,
        ),
        streams_figure,
        Figure(
            "seal peer: pymerkle SqliteTree appends/s",
            peer_rate,
            "/s",
            ceiling_rate,
            peer_rate / ceiling_rate,
        ),
    ]
