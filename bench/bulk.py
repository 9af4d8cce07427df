"""Bulk ingestion: records/s through POST /api/v1/decisions/bulk (gunicorn, 10,000-record NDJSON
bodies) against psycopg COPY of the same audit_decision and timestamping_entry rows."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import rfc8785
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Model, ProtectedError, QuerySet

from audit import api_bulk, vault
from audit.models import AISystem, Decision, ModelVersion, Subject
from audit.services import bulk
from audit.services.bulk import decisions_bulk_record
from audit.services.systems import api_key_create
from bench import Figure, LogMark, log_mark, log_revert, master_key_use, median, phases_timed, say
from timestamping.models import Entry

RECORDS = max(1, int(os.environ.get("VERIDICT_BENCH_BULK_RECORDS", "10000")))
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_BULK_REPS", "3")))
TARGET_RATIO = 0.2
SYSTEM_SLUG = "bench-bulk"
MODEL = {"name": "bench-scorer", "version": "1.0.0"}  # registered by the first bulk, undeclared

# The phases of one bulk request, timed in process by wrapping what the code calls, as the seal
# benchmark does; a phase inside another counts in the outer one.
PHASES = [
    (api_bulk, "ijson_loads", "parse (I-JSON checks)"),
    (api_bulk.BulkDecisionSerializer, "run_validation", "validation (DecisionSerializer)"),
    (bulk, "request_digest", "canonicalisation (RFC 8785: request digest)"),
    (bulk, "decision_envelope", "canonicalisation (RFC 8785: envelope commitments)"),
    (bulk, "leaf_canonical", "canonicalisation (RFC 8785: leaf)"),
    (rfc8785, "dumps", "canonicalisation (RFC 8785: personal part, before encryption)"),
    (vault, "_encrypt", "encryption (AES-GCM: personal data, new subject keys)"),
    (vault, "master_key", "master key file reads (vault.master_key, every call)"),
    (bulk, "note_sign", "signing (Ed25519 SET)"),
    (Model, "__init__", "row objects (Django model instances)"),
    (bulk, "_stored_decisions", "lookups (stored decisions, supersedes, model versions)"),
    (bulk, "_supersede_targets", "lookups (stored decisions, supersedes, model versions)"),
    (bulk, "_model_versions", "lookups (stored decisions, supersedes, model versions)"),
    (bulk, "_rows_insert", "inserts (COPY on PostgreSQL: subjects, entries, decisions)"),
    (None, "_commit", "commit"),
]
OTHER = "other (subject lookups and locks, results, the rest)"


def _body(tag: str, count: int = RECORDS) -> bytes:
    """A body of decisions, each about its own applicant, as a loan scorer sends them."""
    lines = []
    for number in range(count):
        record = {
            "client_decision_id": f"{tag}-{number}",
            "idempotency_key": f"{tag}-key-{number}",
            "model": MODEL,
            "occurred_at": "2026-11-26T10:15:00Z",
            "inputs": {"income": 30_000 + number, "amount": 15_000, "term_months": 48},
            "output": {"label": "deny" if number % 3 else "approve", "score": 0.31},
            "confidence": 0.82,
            "threshold": 0.5,
            "explanation": {"main_factors": ["debt-to-income ratio"], "ai_role": "recommendation"},
            "solely_automated": number % 2 == 0,
            "owner": "officer-17",
            "subject_ref": f"{tag}-applicant-{number}",
            "protected_attributes": {"sex": "female", "age_band": "30-39"},
        }
        lines.append(json.dumps(record, separators=(",", ":")).encode())
    return b"\n".join(lines) + b"\n"


# --- rows: marks, copies, clean-up ----------------------------------------------------------------


def _columns(model: type[Model]) -> str:
    return ", ".join(
        connection.ops.quote_name(field.column)
        for field in model._meta.concrete_fields
        if not field.primary_key
    )


def _max_id(model: type[Model]) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT coalesce(max(id), 0) FROM {model._meta.db_table}")  # noqa: S608
        return cursor.fetchone()[0]


def _copy_out(model: type[Model], key: str, after: int) -> list[bytes]:
    """The rows after a mark, in COPY's own text format."""
    table, columns = model._meta.db_table, _columns(model)
    query = (
        f"COPY (SELECT {columns} FROM {table} WHERE {key} > {int(after)} ORDER BY {key}) TO STDOUT"  # noqa: S608, E501
    )
    with connection.cursor() as cursor, cursor.cursor.copy(query) as copy:
        return [bytes(block) for block in copy]


def _copy_in(model: type[Model], blocks: list[bytes]) -> None:
    query = f"COPY {model._meta.db_table} ({_columns(model)}) FROM STDIN"
    with connection.cursor() as cursor, cursor.cursor.copy(query) as copy:
        for block in blocks:
            copy.write(block)


def _delete(rows: QuerySet[Any]) -> None:
    """Deletes the rows, after the rows of other apps that protect them (a review's owners and
    items of a decision, ...), as many levels deep as they go."""
    while True:
        try:
            rows.delete()
            return
        except ProtectedError as exc:
            protecting: dict[type[Model], list[Any]] = {}
            for row in exc.protected_objects:
                protecting.setdefault(type(row), []).append(row.pk)
            for model, pks in protecting.items():
                _delete(model._default_manager.filter(pk__in=pks))


def _rows_undo(system: AISystem, mark: LogMark, *, keep_subjects: bool = False) -> None:
    """Deletes the bench system's decisions (and its subjects and model versions, which the
    bulks register), then the entries added since the mark: the bench log is left as it was."""
    with transaction.atomic():
        _delete(Decision.objects.filter(system=system))
        if not keep_subjects:
            _delete(Subject.objects.filter(system=system))
            _delete(ModelVersion.objects.filter(system=system))
    log_revert(mark)
    # Else the next repetition's lookups wade through every deleted row (the planner, seeing
    # stale counts, scans the system's index rather than the unique one).
    with connection.cursor() as cursor:
        for model in (Decision, Subject, ModelVersion):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


# --- the server ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _server_start(port: int, log: Path) -> subprocess.Popen[bytes]:
    environment = {
        **os.environ,  # DATABASE_URL, the key files and the master key, as set above
        "DJANGO_SECURE_SSL_REDIRECT": "false",  # DEBUG is off, and this is plain HTTP
        "VERIDICT_THROTTLE_RATE": "100000/min",
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "veridict.wsgi", "--bind", f"127.0.0.1:{port}"]
            + ["--workers", "2", "--timeout", "600"],
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"gunicorn did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)


def _peak_rss_mib(pids: list[int]) -> list[float]:
    """VmHWM of each process: the most resident memory it ever had."""
    peaks = []
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peaks.append(int(line.split()[1]) / 1024)
    return peaks


def _cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used: unlike wall time, what other load on
    the machine does not inflate."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _workers(server: subprocess.Popen[bytes]) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        if len(children) == 2:
            return [int(child) for child in children]
        time.sleep(0.1)
    raise RuntimeError("gunicorn did not start its 2 workers")


def _send(port: int, key: str, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    try:
        connection.request(
            "POST",
            "/api/v1/decisions/bulk",
            body=body,
            headers={"Authorization": f"Api-Key {key}", "Content-Type": "application/x-ndjson"},
        )
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _post(port: int, key: str, body: bytes, records: int = RECORDS) -> dict[str, Any]:
    status, raw = _send(port, key, body)
    if status != 200:
        raise RuntimeError(f"the bulk answered {status}: {raw[:2000].decode(errors='replace')}")
    answer = json.loads(raw)
    if answer["created"] != records:
        failures = [r for r in answer["results"] if r["status"] != 201][:3]
        raise RuntimeError(f"only {answer['created']} of {records} recorded: {failures}")
    return answer


def _system() -> AISystem:
    """The bench system, with nothing of a run killed before its clean-up (prepare() already
    discarded the unsealed entries such a run left)."""
    system, _ = AISystem.objects.get_or_create(slug=SYSTEM_SLUG, defaults={"name": "Bulk bench"})
    with transaction.atomic():
        _delete(Decision.objects.filter(system=system))
        _delete(Subject.objects.filter(system=system))
        _delete(ModelVersion.objects.filter(system=system))
    return system


def _breakdown(system: AISystem, body: bytes) -> tuple[float, dict[str, float]]:
    """One bulk in process, phases timed; (seconds, seconds per phase). Undone afterwards."""
    mark = log_mark()
    try:
        with phases_timed(PHASES) as spent:
            start = time.perf_counter()
            serializer = api_bulk.BulkDecisionSerializer()
            raw_records = api_bulk.ndjson_records(io.BytesIO(body))
            items = [api_bulk.bulk_item(n, raw, serializer) for n, raw in enumerate(raw_records)]
            results = decisions_bulk_record(system=system, items=items)
            seconds = time.perf_counter() - start
        assert [result.status for result in results] == [201] * RECORDS
    finally:
        _rows_undo(system, mark)
    spent[OTHER] = seconds - sum(spent.values())
    return seconds, dict(spent)


def run() -> list[Figure]:
    say(
        f"\n== bulk: {RECORDS:,}-record NDJSON bodies through POST /api/v1/decisions/bulk "
        f"(gunicorn, 2 sync workers), {REPETITIONS} repetitions"
    )
    master_key_use()
    call_command("createcachetable")  # the throttle's counts, without REDIS_URL
    system = _system()
    key = api_key_create(system=system, name=f"bench {uuid.uuid4().hex[:8]}")
    http_seconds: list[float] = []
    copy_seconds: list[float] = []
    cpu_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as folder:
        port = _free_port()
        log = Path(folder) / "gunicorn.log"
        server = _server_start(port, log)
        try:
            # Warm: imports, the first connection, the key check's cache, in both workers.
            for warm in range(2):
                mark = log_mark()
                _post(port, key, _body(f"warm-{warm}-{uuid.uuid4().hex[:8]}", 5), records=5)
                _rows_undo(system, mark)
            workers = _workers(server)
            rss_before = _peak_rss_mib(workers)
            for repetition in range(1, REPETITIONS + 1):
                body = _body(f"rep{repetition}-{uuid.uuid4().hex[:8]}")
                mark, decision_id = log_mark(), _max_id(Decision)
                try:
                    cpu = _cpu_seconds(workers)
                    start = time.perf_counter()
                    _post(port, key, body)
                    http_seconds.append(time.perf_counter() - start)
                    cpu_seconds.append(_cpu_seconds(workers) - cpu)
                    entries = _copy_out(Entry, "seq", mark.last_seq)
                    decisions = _copy_out(Decision, "id", decision_id)
                    # The same rows again, by COPY, onto the same table state: the subjects
                    # stay, the decisions and entries go (and the entry sequence is rewound, so
                    # the decisions' entry ids stay right).
                    _rows_undo(system, mark, keep_subjects=True)
                    start = time.perf_counter()
                    with transaction.atomic():
                        _copy_in(Entry, entries)
                        _copy_in(Decision, decisions)
                    copy_seconds.append(time.perf_counter() - start)
                    assert Decision.objects.filter(id__gt=decision_id).count() == RECORDS
                finally:
                    _rows_undo(system, mark)
                say(
                    f"  rep {repetition}: bulk {http_seconds[-1]:.2f} s = "
                    f"{RECORDS / http_seconds[-1]:,.0f} records/s; COPY {copy_seconds[-1]:.3f} s "
                    f"= {RECORDS / copy_seconds[-1]:,.0f} rows/s; "
                    f"ratio {copy_seconds[-1] / http_seconds[-1]:.3f}  "
                    f"({len(body) / 2**20:.1f} MiB body)"
                )
            rss_after = _peak_rss_mib(workers)
        finally:
            server.terminate()
            server.wait(timeout=60)
    growth = max(after - before for before, after in zip(rss_before, rss_after, strict=True))
    say(
        f"worker peak RSS {max(rss_after):.0f} MiB, {growth:+.0f} MiB over the warm worker's "
        f"(a {RECORDS:,}-record body of {len(body) / 2**20:.1f} MiB)"
    )
    ratios = [copy / bulk for copy, bulk in zip(copy_seconds, http_seconds, strict=True)]
    ratio = median(ratios)
    rate, ceiling = RECORDS / median(http_seconds), RECORDS / median(copy_seconds)
    say(f"bulk median {rate:,.0f} records/s; COPY {ceiling:,.0f} rows/s; ratio {ratio:.3f}")

    body = _body(f"breakdown-{uuid.uuid4().hex[:8]}")
    cpu_start = time.process_time()
    seconds, spent = _breakdown(system, body)
    breakdown_cpu = time.process_time() - cpu_start
    say(
        f"where a record's time goes (one {RECORDS:,}-record bulk in process: {seconds:.2f} s, "
        f"CPU {breakdown_cpu:.2f} s; through HTTP the median was {median(http_seconds):.2f} s, "
        f"worker CPU {median(cpu_seconds):.2f} s):"
    )
    for name in list(dict.fromkeys(name for _, _, name in PHASES)) + [OTHER]:
        share = spent.get(name, 0.0)
        say(f"  {name:<72} {share / RECORDS * 1e6:8.1f} µs  {share / seconds:6.1%}")
    # Wall times move with the other load on a shared machine; CPU times much less.
    say(
        f"CPU per record: {median(cpu_seconds) / RECORDS * 1e6:.0f} µs in the gunicorn worker "
        f"(HTTP, authentication and the answer included), {breakdown_cpu / RECORDS * 1e6:.0f} µs "
        "in process with the phases timed"
    )
    return [
        Figure(
            f"bulk: records/s, {RECORDS:,}-record NDJSON via gunicorn",
            rate,
            "/s",
            ceiling,
            ratio,
            f">= {TARGET_RATIO} ratio",
            ratio >= TARGET_RATIO,
        )
    ]
