"""veridict-audit throughput over a 100,000-decision evidence package, against hashlib computing the
same leaf hashes and root; and the command's peak RSS.

The package is synthesised here, in the format of docs/evidence.md, without the database: one AI
system whose decisions are the whole log (so the global tree and the system log coincide),
100 batches of 1,000 decisions, each batch's checkpoint signed with the bench log key and
time-stamped by the bench's built-in TSA. Every decision leaf is built like
`audit.services.decisions.decision_envelope` builds one: salted commitments to its personal
fields, and the package opens protected attributes, owner and client decision id, as the
exporter does.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from veridict_verify import canonical, merkle
from veridict_verify.formats import Checkpoint, format_time
from veridict_verify.note import note_sign

import bench
from bench import Figure, median, say
from bench.seal import ceiling_root
from timestamping import keys, tsa

DECISIONS = int(os.environ.get("VERIDICT_BENCH_AUDIT_DECISIONS", "100000"))
BATCH_SIZE = 1_000
REPETITIONS = 3
TARGET_RATIO = 0.1
RSS_LIMIT_MB = 300
OPENED = ("protected_attributes", "owner", "client_decision_id")


class _Levels:
    """Perfect subtree hashes of a growing tree, level by level: range hashes for proofs in
    O(log n) each."""

    def __init__(self) -> None:
        self.levels: list[list[bytes]] = [[]]

    def append(self, leaf_hash: bytes) -> None:
        self.levels[0].append(leaf_hash)
        height = 0
        while len(self.levels[height]) % 2 == 0:
            below = self.levels[height]
            if len(self.levels) == height + 1:
                self.levels.append([])
            self.levels[height + 1].append(merkle.node_hash(below[-2], below[-1]))
            height += 1

    def range_hash(self, lo: int, hi: int) -> bytes:
        return merkle.fold_right([self.levels[h][i] for h, i in merkle.perfect_subtrees(lo, hi)])


def _decision(rng: random.Random, number: int, stream: str, at: datetime) -> tuple[bytes, dict]:
    """A decision leaf's canonical bytes and the openings the package carries."""
    personal = {
        "client_decision_id": f"loan-{number:06d}",
        "subject_ref": f"applicant-{rng.randrange(10**6):06d}",
        "inputs": {
            "income": rng.randrange(10_000, 200_000),
            "amount": rng.randrange(1_000, 50_000),
        },
        "explanation": {"main_factors": ["debt-to-income ratio"], "ai_role": "recommendation"},
        "owner": f"officer-{rng.randrange(40)}",
        "protected_attributes": {
            "sex": rng.choice(["female", "male"]),
            "race": rng.choice(["asian", "black", "white", "hispanic", "other"]),
        },
    }
    salts = {name: secrets.token_bytes(32) for name in personal}
    score = round(rng.random(), 4)
    body = {
        "type": "decision",
        "system": "loan-scorer",
        "model": {"name": "loan-scorer", "version": "4.2.0"},
        "model_version_entry": str(uuid.UUID(int=rng.getrandbits(128))),
        "occurred_at": format_time(at),
        "output": {"label": "approve" if score >= 0.5 else "deny", "score": score},
        "confidence": round(rng.random(), 4),
        "threshold": 0.5,
        "solely_automated": rng.random() < 0.1,
        "supersedes": None,
        "commitments": {
            name: hashlib.sha256(salts[name] + canonical.dumps(value)).hexdigest()
            for name, value in personal.items()
        },
        "policy": None,
        "attribution": None,
    }
    leaf = {
        "v": 1,
        "id": str(uuid.UUID(int=rng.getrandbits(128))),
        "kind": "decision",
        "received_at": format_time(at),
        "stream": stream,
        "body": body,
    }
    openings = {
        name: {"salt_b64": base64.b64encode(salts[name]).decode(), "value": personal[name]}
        for name in OPENED
    }
    return canonical.dumps(leaf), openings


def package_write(path: Path, count: int) -> list[bytes]:
    """Writes a package of `count` decisions; their canonical bytes (for the ceiling)."""
    rng = random.Random(2612)
    stream = secrets.token_hex(16)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    decisions = [
        _decision(rng, number, stream, start + timedelta(minutes=number)) for number in range(count)
    ]
    origin, signing_key = settings.LOG_ORIGIN, keys.signing_key()
    tree = _Levels()
    batch_lines: list[dict[str, Any]] = []
    entry_lines: list[dict[str, Any]] = []
    prev_header_hash, prev_size, prev_root = "0" * 64, 0, merkle.EMPTY_ROOT
    for number, first in enumerate(range(0, count, BATCH_SIZE), 1):
        chunk = decisions[first : first + BATCH_SIZE]
        for canonical_bytes, openings in chunk:
            tree.append(merkle.leaf_hash(canonical_bytes))
            entry_lines.append(
                {
                    "type": "entry",
                    "index": len(entry_lines),
                    "batch": number,
                    "canonical_b64": base64.b64encode(canonical_bytes).decode(),
                    "openings": openings,
                    "review": None,
                }
            )
        size = prev_size + len(chunk)
        root = tree.range_hash(0, size)
        header = {
            "v": 2,
            "origin": origin,
            "number": number,
            "prev_header_hash": prev_header_hash,
            "prev_tree_size": prev_size,
            "prev_root": prev_root.hex(),
            "tree_size": size,
            "root": root.hex(),
            "consistency": [
                step.hex() for step in merkle.consistency_proof(prev_size, size, tree.range_hash)
            ]
            if prev_size
            else [],
            "sealed_at": format_time(start + timedelta(minutes=first + len(chunk))),
            "streams": [{"id": stream, "prev_size": prev_size, "size": size, "root": root.hex()}],
        }
        raw = canonical.dumps(header)
        header_hash = hashlib.sha256(raw).digest()
        body = Checkpoint(origin, size, root, number, header_hash).body()
        # Signed as keys.sign signs, without publishing the key in a database: there is none.
        checkpoint = note_sign(body, origin, signing_key)
        batch_lines.append(
            {
                "type": "batch",
                "number": number,
                "header_b64": base64.b64encode(raw).decode(),
                "header_hash": header_hash.hex(),
                "checkpoint": checkpoint,
                "anchors": [
                    {
                        "type": "rfc3161",
                        "tsa": "builtin",
                        "checkpoint": checkpoint,
                        "consistency": [],
                        "tsr_b64": base64.b64encode(
                            tsa.tsa_stamp(hashlib.sha256(body.encode()).digest())
                        ).decode(),
                    }
                ],
            }
        )
        prev_header_hash, prev_size, prev_root = header_hash.hex(), size, root
    header_line = {
        "type": "header",
        "version": "veridict.evidence/v1",
        "origin": origin,
        "system": {"slug": "loan-scorer", "name": "Loan scorer", "stream": stream},
        "range": {"from": None, "to": None},
        "start": {"batch": 0, "size": 0, "compact_range": []},
        "end": {"batch": len(batch_lines), "size": count},
        "openings": {"explanation": False, "inputs": False},
    }
    lines = [header_line, *batch_lines, *entry_lines]
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as handle:
        for line in lines:
            handle.write(json.dumps(line) + "\n")
        handle.write(
            json.dumps({"type": "end", "entries": count, "erased": 0, "lines": len(lines)}) + "\n"
        )
    return [canonical_bytes for canonical_bytes, _ in decisions]


# The command, reporting its own peak RSS (VmHWM: this process's high-water mark, which exec
# starts afresh; getrusage would also count the bench's memory that the fork copied).
AUDIT_REPORTING_RSS = (
    "import sys\n"
    "from veridict_verify.audit_cli import main\n"
    "code = main(sys.argv[1:])\n"
    "peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0]\n"
    "print(peak.split()[1], file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def _audit_once(path: Path, ca_file: Path) -> tuple[float, float, float]:
    """veridict-audit on the package, in a process of its own: (seconds, CPU seconds, peak RSS
    in MB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    finished = subprocess.run(
        [
            sys.executable,
            "-c",
            AUDIT_REPORTING_RSS,
            str(path),
            "--key",
            str(keys.verifier_key()),
            "--tsa-ca",
            str(ca_file),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    if finished.returncode != 0:
        raise AssertionError(
            f"the bench package does not pass:\n{finished.stdout}{finished.stderr}"
        )
    return seconds, cpu, int(finished.stderr.split()[-1]) / 1024


def _ceiling_seconds(canonicals: Sequence[bytes]) -> tuple[float, float]:
    """The ceiling's (seconds, CPU seconds)."""
    started, cpu = time.perf_counter(), time.process_time()
    ceiling_root(canonicals)
    return time.perf_counter() - started, time.process_time() - cpu


def run() -> list[Figure]:
    bench._keys_create()  # the bench's log key and built-in TSA, made once (no database needed)
    say(
        f"\n== audit: veridict-audit of a {DECISIONS:,}-decision package, {REPETITIONS} repetitions"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "pkg.ndjson.gz"
        clock = time.perf_counter()
        canonicals = package_write(path, DECISIONS)
        say(
            f"synthesised the package ({path.stat().st_size / 1e6:.1f} MB gzip, "
            f"{DECISIONS // BATCH_SIZE} batches) in {time.perf_counter() - clock:.1f} s"
        )
        ca_file = Path(settings.TSA_CA_CERT_FILE)
        audit_times, ceiling_times, peaks = [], [], []
        for _ in range(REPETITIONS):
            seconds, cpu, peak = _audit_once(path, ca_file)
            audit_times.append((seconds, cpu))
            peaks.append(peak)
            ceiling_times.append(_ceiling_seconds(canonicals))
    peak_mb = max(peaks)
    say(
        "veridict-audit (wall / CPU s): "
        + ", ".join(f"{wall:.2f} / {cpu:.2f}" for wall, cpu in audit_times)
        + "; hashlib leaf hashes and root: "
        + ", ".join(f"{wall:.3f} / {cpu:.3f}" for wall, cpu in ceiling_times)
        + f"; peak RSS {peak_mb:.0f} MB"
    )
    wall_ratio = median([wall for wall, _ in ceiling_times]) / median(
        [wall for wall, _ in audit_times]
    )
    say(f"wall-clock ratio {wall_ratio:.3f} (moves with the machine's other load)")
    # CPU time, as `single` reports it: on a shared machine it moves much less than wall time.
    rate = DECISIONS / median([cpu for _, cpu in audit_times])
    ceiling = DECISIONS / median([cpu for _, cpu in ceiling_times])
    ratio = rate / ceiling
    return [
        Figure(
            "audit (CPU)",
            rate,
            "entries/s",
            ceiling,
            ratio,
            f"ratio >= {TARGET_RATIO}",
            ratio >= TARGET_RATIO,
        ),
        Figure(
            "audit peak RSS",
            peak_mb,
            "MB",
            None,
            None,
            f"< {RSS_LIMIT_MB} MB",
            peak_mb < RSS_LIMIT_MB,
        ),
    ]
