"""Proof latency in a system log (stream) of 1,000,000 entries, against a primary-key SELECT.

The system log lives in a bench database of its own (`<bench database>_streams`), built once and
cached like the bench log: sealing a million stream entries into `veridict_bench` would double its
global log, and the other figures are defined on a log of 1,000,000 entries. The parent process
runs the measurement in a child whose DATABASE_URL names that database (Django reads it once).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from django.db import connection
from veridict_verify import merkle

import bench
from bench import ENTRY_TABLE, Figure, median, percentile, say

STREAMS_DATABASE_URL = os.environ.get(
    "VERIDICT_BENCH_STREAMS_DATABASE_URL",
    urllib.parse.urlunsplit(
        urllib.parse.urlsplit(bench.DATABASE_URL)._replace(path=f"/{bench.DATABASE_NAME}_streams")
    ),
)
# One AI system's log, named as the audit domain names streams (a 32-hex-digit keyed hash).
STREAM = "b5e1c0de" * 4
QUERIES = max(1000, int(os.environ.get("VERIDICT_BENCH_PROOF_QUERIES", "2000")))
WARMUP = 100
CHECKED = 200
TARGET_P99_MS = 5.0


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

    floor_median, floor_p99 = median(floor) * 1000, percentile(floor, 0.99) * 1000
    say(
        f"  {'primary-key SELECT (the floor)':<58} "
        f"median {floor_median:6.3f} ms   p99 {floor_p99:6.3f} ms"
    )
    figures = []
    for name, times, target in (
        ("stream inclusion by leaf hash (selectors.proof_stream_inclusion)", by_hash, True),
        ("stream consistency (selectors.proof_stream_consistency)", consistency, False),
        ("peer: global inclusion by leaf hash (selectors.proof_inclusion)", global_by_hash, False),
    ):
        middle_ms, p99 = median(times) * 1000, percentile(times, 0.99) * 1000
        say(
            f"  {name:<58} median {middle_ms:6.3f} ms   p99 {p99:6.3f} ms   "
            f"({middle_ms / floor_median:.1f} and {p99 / floor_p99:.1f} primary-key SELECTs)"
        )
        short = name.split(" (")[0]
        figures.append(
            Figure(
                f"stream_proofs: {short}, median",
                middle_ms,
                "ms",
                floor_median,
                floor_median / middle_ms,
            )
        )
        figures.append(
            Figure(
                f"stream_proofs: {short}, p99",
                p99,
                "ms",
                floor_p99,
                floor_p99 / p99,
                f"< {TARGET_P99_MS:g} ms" if target else "-",
                p99 < TARGET_P99_MS if target else None,
            )
        )
    return figures


def run() -> list[Figure]:
    """In the parent: the same measurement in a child bound to the system log's database."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        environment = dict(os.environ, VERIDICT_BENCH_DATABASE_URL=STREAMS_DATABASE_URL)
        # The parent's own database must not leak into the child's Django settings.
        environment.pop("DATABASE_URL", None)
        subprocess.run(
            [sys.executable, "-m", "bench.stream_proofs", str(out)], env=environment, check=True
        )
        return [Figure(**fields) for fields in json.loads(out.read_text())]


if __name__ == "__main__":
    figures = measure()
    Path(sys.argv[1]).write_text(json.dumps([dataclasses.asdict(f) for f in figures]))
