"""Evidence export: decisions/s and peak RSS of `manage.py evidence_export` over one AI system's
log, against psycopg COPY TO of the same entry and decision rows."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.db import connection

import bench
from audit import vault
from audit.models import AISystem, Decision
from audit.serializers import DecisionSerializer
from audit.services.bulk import BulkItem, decisions_bulk_record
from audit.services.systems import ai_system_create
from bench import Figure, master_key_use, say
from timestamping.models import Entry, StreamHead
from timestamping.services import batch_seal

DECISIONS = max(1, int(os.environ.get("VERIDICT_BENCH_EVIDENCE_DECISIONS", "1000000")))
BULK = 10_000
SYSTEM_SLUG = "bench-evidence"
TARGET_RSS_MIB = 200
RECORD = {
    "client_decision_id": "template",
    "model": {"name": "bench-evidence-scorer", "version": "1.0.0"},
    "occurred_at": "2026-11-26T10:15:00Z",
    "inputs": {"income": 30_000, "amount": 15_000, "term_months": 48},
    "output": {"label": "deny", "score": 0.31},
    "confidence": 0.82,
    "threshold": 0.5,
    "explanation": {"main_factors": ["debt-to-income ratio"], "ai_role": "recommendation"},
    "solely_automated": False,
    "owner": "officer-17",
    "subject_ref": "template",
    "protected_attributes": {"sex": "female", "age_band": "30-39"},
}


def _system() -> AISystem:
    system = AISystem.objects.filter(slug=SYSTEM_SLUG).first()
    return system or ai_system_create(slug=SYSTEM_SLUG, name="Bench evidence")


def _log_build(system: AISystem, target: int) -> None:
    """The system's log of `target` decisions, each about its own applicant, through the bulk
    service (what POST /decisions/bulk runs), sealed 10,000 at a time; kept for later runs."""
    have = Decision.objects.filter(system=system).count()
    if have >= target:
        say(f"reusing the cached system log of {SYSTEM_SLUG}: {have:,} decisions")
        return
    say(f"building the system log of {SYSTEM_SLUG}: {have:,} -> {target:,} decisions (cached)")
    template = dict(DecisionSerializer().run_validation(RECORD))
    started = time.perf_counter()
    while have < target:
        count = min(BULK, target - have)
        items = [
            BulkItem(
                index,
                data={
                    **template,
                    "client_decision_id": f"loan-{have + index}",
                    "subject_ref": f"applicant-{have + index}",
                    "inputs": {**template["inputs"], "income": 30_000 + have + index},
                    "solely_automated": (have + index) % 2 == 0,
                },
            )
            for index in range(count)
        ]
        results = decisions_bulk_record(system=system, items=items)
        assert all(result.status == 201 for result in results), results[:3]
        while batch_seal() is not None:
            pass
        have += count
        say(f"  {have:>9,} decisions sealed  ({time.perf_counter() - started:6.1f} s)")


def _measured(*arguments: str) -> tuple[float, float, int]:
    """(seconds, peak RSS in MiB, bytes written to stdout) of a manage.py command in its own
    process; what it writes is only counted."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "manage.py", *arguments], cwd=settings.BASE_DIR, stdout=subprocess.PIPE
    )
    assert child.stdout is not None
    size = 0
    while chunk := child.stdout.read(1 << 20):
        size += len(chunk)
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    seconds = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise RuntimeError(f"manage.py {arguments[0]} exited with {child.returncode}")
    return seconds, usage.ru_maxrss / 1024, size


def _copy_ceiling(system: AISystem) -> tuple[float, int]:
    """(seconds, rows) of COPY TO of the rows a package is made of: every entry of the stream,
    in order, with its decision's encrypted personal part."""
    entries, decisions = Entry._meta.db_table, Decision._meta.db_table
    sql = (
        f"COPY (SELECT e.seq, e.uuid, e.canonical, d.personal_data FROM {entries} e "  # noqa: S608
        f"LEFT JOIN {decisions} d ON d.entry_id = e.seq WHERE e.stream = %s ORDER BY e.seq) "
        "TO STDOUT"
    )
    rows = 0
    started = time.perf_counter()
    stream = vault.system_stream(system_id=system.pk)
    with connection.cursor() as cursor, cursor.cursor.copy(sql, [stream]) as copy:
        for block in copy:
            rows += bytes(block).count(b"\n")
    return time.perf_counter() - started, rows


def run() -> list[Figure]:
    """In the parent: the measurement in a child bound to a database of its own, so that the
    system log it builds and keeps (DECISIONS decisions) does not grow the shared bench log."""
    return bench.in_own_database("bench.evidence", "evidence")


def measure() -> list[Figure]:
    bench.prepare()
    say(f"\n== evidence: exporting a system log of {DECISIONS:,} decisions (evidence_export)")
    master_key_use()
    system = _system()
    _log_build(system, DECISIONS)
    stream = vault.system_stream(system_id=system.pk)
    size = StreamHead.objects.filter(stream=stream).order_by("-size").values_list("size", flat=True)
    entries: Any = size.first() or 0
    decisions = Decision.objects.filter(system=system).count()
    copy_seconds, copied = _copy_ceiling(system)
    assert copied == entries, (copied, entries)
    # What any manage.py process holds before it does anything (Django, the apps, their
    # libraries): the export's own memory is what it adds to this.
    _, baseline, _ = _measured("check")
    seconds, rss, package = _measured(
        "evidence_export", "-", "--system", system.slug, "--plaintext"
    )
    say(
        f"  {entries:,} entries ({decisions:,} decisions) in {seconds:.1f} s, package "
        f"{package / 2**20:,.0f} MiB (gzip); peak RSS {rss:.0f} MiB, of which {baseline:.0f} MiB "
        f"is a bare `manage.py check`; COPY TO {copy_seconds:.1f} s"
    )
    rate, ceiling = decisions / seconds, decisions / copy_seconds
    return [
        Figure(
            "evidence export",
            rate,
            "decisions/s",
            ceiling,
            rate / ceiling,
            target="-",
            passed=None,
        ),
        Figure("evidence export RSS over manage.py check", rss - baseline, "MiB", None, None),
        Figure(
            "evidence export peak RSS",
            rss,
            "MiB",
            None,
            None,
            target=f"< {TARGET_RSS_MIB} MB",
            passed=rss < TARGET_RSS_MIB,
        ),
    ]


if __name__ == "__main__":
    bench.figures_write(measure(), sys.argv[1])
