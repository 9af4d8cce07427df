"""Proof latency in the 1,000,000-entry log, against one primary-key SELECT as the floor."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import Any

from django.db import connection
from veridict_verify import merkle

from bench import ENTRY_TABLE, Figure, log_ensure, median, percentile, say
from timestamping import selectors, tree
from timestamping.models import Batch, Entry

QUERIES = max(1000, int(os.environ.get("VERIDICT_BENCH_PROOF_QUERIES", "2000")))
WARMUP = 100
CHECKED = 200  # consistency proofs checked afterwards (each needs two more root computations)
TARGET_P99_MS = 5.0


def _timed(into: list[float], function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    into.append(time.perf_counter() - start)
    return result


def _floor_query(seq: int) -> bytes:
    """The floor of any read the proofs make: one row by primary key, as the ORM would issue it."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT leaf_hash FROM {ENTRY_TABLE} WHERE seq = %s", [seq])  # noqa: S608
        return bytes(cursor.fetchone()[0])


def _leaf_hash_at(index: int) -> bytes:
    batch = Batch.objects.filter(tree_size__gt=index).order_by("tree_size").first()
    assert batch is not None
    return bytes(Entry.objects.values_list("leaf_hash", flat=True).get(seq=batch.seq_at(index)))


def run() -> list[Figure]:
    size = log_ensure()
    latest = selectors.batch_latest()
    assert latest is not None
    root = bytes(latest.root)
    say(f"\n== proofs: {QUERIES:,} random queries of each kind in a log of {size:,} entries")
    rng = random.Random(1126)
    first_seq = Batch.objects.get(number=1).first_seq
    seqs = [rng.randint(first_seq, latest.last_seq) for _ in range(QUERIES + WARMUP)]
    found = dict(Entry.objects.filter(seq__in=seqs).values_list("seq", "leaf_hash"))
    # A skipped seq has no entry; the bench log has none, but a missing one must not crash the run.
    sampled = [(seq, bytes(found[seq])) for seq in seqs if seq in found]
    indices = [rng.randrange(size) for _ in range(QUERIES + WARMUP)]
    size_pairs = [tuple(sorted(rng.sample(range(1, size + 1), 2))) for _ in range(QUERIES + WARMUP)]

    floor: list[float] = []
    by_hash: list[float] = []
    by_index: list[float] = []
    consistency: list[float] = []
    results = []
    # Round robin, so that a burst of noise on the shared machine hits every kind alike.
    for round_number, (seq, leaf_hash) in enumerate(sampled):
        index = indices[round_number]
        old_size, new_size = size_pairs[round_number]
        warm = round_number >= WARMUP
        _timed(floor if warm else [], _floor_query, seq)
        proof = _timed(
            by_hash if warm else [], selectors.proof_inclusion, leaf_hash=leaf_hash, tree_size=size
        )
        path = _timed(by_index if warm else [], tree.inclusion_proof, index, size)
        steps = _timed(
            consistency if warm else [],
            selectors.proof_consistency,
            old_size=old_size,
            new_size=new_size,
        )
        if warm:
            results.append((leaf_hash, proof, index, path, old_size, new_size, steps))

    # Latencies of wrong proofs would be worthless: every inclusion proof is checked against the
    # signed root, and a sample of the others.
    for leaf_hash, proof, *_ in results:
        merkle.verify_inclusion(
            proof["leaf_index"],
            size,
            leaf_hash,
            [bytes.fromhex(step) for step in proof["hashes"]],
            root,
        )
    for _, _, index, path, old_size, new_size, steps in results[:CHECKED]:
        merkle.verify_inclusion(index, size, _leaf_hash_at(index), path, root)
        new_root = root if new_size == size else tree.tree_root(new_size)
        merkle.verify_consistency(old_size, new_size, tree.tree_root(old_size), new_root, steps)
    say(
        f"checked {len(results):,} inclusion proofs by leaf hash, "
        f"{min(CHECKED, len(results))} of the others"
    )

    return latency_figures(
        "proofs",
        floor,
        [
            ("inclusion by leaf hash (selectors.proof_inclusion)", by_hash, True),
            ("inclusion by index (tree.inclusion_proof)", by_index, True),
            ("consistency (selectors.proof_consistency)", consistency, True),
        ],
    )


def latency_figures(
    bench_name: str, floor: list[float], series: list[tuple[str, list[float], bool]]
) -> list[Figure]:
    """Median and p99 of each series of query times (seconds), printed and as figures, each a
    ratio to the primary-key SELECT floor timed in the same rounds; a series marked True is
    held to the p99 target."""
    width = max(len(name) for name, _, _ in series)
    floor_median, floor_p99 = median(floor) * 1000, percentile(floor, 0.99) * 1000
    say(
        f"  {'primary-key SELECT (the floor)':<{width}} "
        f"median {floor_median:6.3f} ms   p99 {floor_p99:6.3f} ms"
    )
    figures = []
    for name, times, targeted in series:
        middle, p99 = median(times) * 1000, percentile(times, 0.99) * 1000
        say(
            f"  {name:<{width}} median {middle:6.3f} ms   p99 {p99:6.3f} ms   "
            f"({middle / floor_median:.1f} and {p99 / floor_p99:.1f} primary-key SELECTs)"
        )
        short = name.split(" (")[0]
        figures.append(
            Figure(
                f"{bench_name}: {short}, median", middle, "ms", floor_median, floor_median / middle
            )
        )
        figures.append(
            Figure(
                f"{bench_name}: {short}, p99",
                p99,
                "ms",
                floor_p99,
                floor_p99 / p99,
                f"< {TARGET_P99_MS:g} ms" if targeted else "-",
                p99 < TARGET_P99_MS if targeted else None,
            )
        )
    return figures
