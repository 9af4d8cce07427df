"""Proof latency in a system log (stream) of 1,000,000 entries, against a primary-key SELECT.

The system log lives in a bench database of its own (`<bench database>_streams`), built once and
cached like the bench log: sealing a million stream entries into `veridict_bench` would double its
global log, and the other figures are defined on a log of 1,000,000 entries. The parent process
runs the measurement in a child whose DATABASE_URL names that database (Django reads it once).
"""

from __future__ import annotations

import os
import random
import sys
import time

from django.db import connection
from veridict_verify import merkle

import bench
from bench import ENTRY_TABLE, Figure, say
from bench.proofs import latency_figures

# One AI system's log, named as the audit domain names streams (a 32-hex-digit keyed hash).
STREAM = "b5e1c0de" * 4
QUERIES = max(1000, int(os.environ.get("VERIDICT_BENCH_PROOF_QUERIES", "2000")))
WARMUP = 100
CHECKED = 200


def _floor_query(seq: int) -> bytes:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT leaf_hash FROM {ENTRY_TABLE} WHERE seq = %s", [seq])  # noqa: S608
        return bytes(cursor.fetchone()[0])


def measure() -> list[Figure]:
    """In the child: builds (once) the system log, then times proofs by leaf hash in it."""
    from timestamping import selectors, tree
    from timestamping.models import Entry, StreamHead

    bench.prepare()
    bench.log_ensure(stream=STREAM)
    head = StreamHead.objects.filter(stream=STREAM).order_by("-size").first()
    assert head is not None
    size, root = head.size, bytes(head.root)
    say(
        f"\n== stream_proofs: {QUERIES:,} random queries of each kind in a system log of "
        f"{size:,} entries ({bench.DATABASE_NAME})"
    )
    rng = random.Random(1207)
    first_seq, last_seq = (
        Entry.objects.filter(stream=STREAM).order_by("seq").values_list("seq", flat=True)[0],
        Entry.objects.filter(stream=STREAM).order_by("-seq").values_list("seq", flat=True)[0],
    )
    seqs = [rng.randint(first_seq, last_seq) for _ in range(QUERIES + WARMUP)]
    found = dict(Entry.objects.filter(seq__in=seqs, stream=STREAM).values_list("seq", "leaf_hash"))
    sampled = [(seq, bytes(found[seq])) for seq in seqs if seq in found]
    tree_size_global = selectors.tree_size_current()
    size_pairs = [tuple(sorted(rng.sample(range(1, size + 1), 2))) for _ in sampled]

    floor: list[float] = []
    by_hash: list[float] = []
    consistency: list[float] = []
    # A peer in the same rounds: the global log's proof of the same leaf (this database's global
    # log holds the same leaves), which `proofs` times in veridict_bench; both see the same noise.
    global_by_hash: list[float] = []
    results = []
    for round_number, (seq, leaf_hash) in enumerate(sampled):
        warm = round_number >= WARMUP
        old_size, new_size = size_pairs[round_number]
        start = time.perf_counter()
        _floor_query(seq)
        middle = time.perf_counter()
        proof = selectors.proof_stream_inclusion(stream=STREAM, leaf_hash=leaf_hash, tree_size=size)
        end = time.perf_counter()
        steps = selectors.proof_stream_consistency(
            stream=STREAM, old_size=old_size, new_size=new_size
        )
        done = time.perf_counter()
        selectors.proof_inclusion(leaf_hash=leaf_hash, tree_size=tree_size_global)
        peer = time.perf_counter()
        if warm:
            floor.append(middle - start)
            by_hash.append(end - middle)
            consistency.append(done - end)
            global_by_hash.append(peer - done)
            results.append((leaf_hash, proof, old_size, new_size, steps))

    # Latencies of wrong proofs would be worthless: every inclusion proof is checked against the
    # stream's latest root, and a sample of the consistency proofs.
    for leaf_hash, proof, *_ in results:
        merkle.verify_inclusion(
            proof["leaf_index"],
            size,
            leaf_hash,
            [bytes.fromhex(step) for step in proof["hashes"]],
            root,
        )
    for _, _, old_size, new_size, steps in results[:CHECKED]:
        merkle.verify_consistency(
            old_size,
            new_size,
            tree.tree_root(old_size, stream=STREAM),
            root if new_size == size else tree.tree_root(new_size, stream=STREAM),
            steps,
        )
    say(
        f"checked {len(results):,} stream inclusion proofs by leaf hash against the stream root, "
        f"{min(CHECKED, len(results))} consistency proofs"
    )

    return latency_figures(
        "stream_proofs",
        floor,
        [
            ("stream inclusion by leaf hash (selectors.proof_stream_inclusion)", by_hash, True),
            ("stream consistency (selectors.proof_stream_consistency)", consistency, False),
            (
                "peer: global inclusion by leaf hash (selectors.proof_inclusion)",
                global_by_hash,
                False,
            ),
        ],
    )


def run() -> list[Figure]:
    """In the parent: the same measurement in a child bound to the system log's database."""
    return bench.in_own_database("bench.stream_proofs", "streams")


if __name__ == "__main__":
    bench.figures_write(measure(), sys.argv[1])
