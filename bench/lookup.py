"""Document lookup by digest with 1,000,000 registered documents, server side, against a bare
indexed primary-key SELECT through psycopg as the ceiling."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg
from django.core.handlers.wsgi import WSGIHandler
from django.core.management import call_command
from django.db import connection, transaction
from django.test import RequestFactory, override_settings

from audit.models import AISystem, Document
from bench import DATABASE_URL, Figure, log_ensure, median, percentile, say
from timestamping import selectors
from timestamping.models import Entry

QUERIES = max(1000, int(os.environ.get("VERIDICT_BENCH_LOOKUP_QUERIES", "2000")))
# The embedded default (the database as the limits' cache) is printed as a peer, on fewer queries.
PEER_QUERIES = 500
# Web processes keep their database connection, as production's DATABASE_URL says with
# ?conn_max_age= (bench/single.py does the same); 0 would time a new connection per request.
CONN_MAX_AGE = int(os.environ.get("VERIDICT_BENCH_LOOKUP_CONN_MAX_AGE", "60"))
WARMUP = 100
TARGET_P99_MS = 20.0
SYSTEM_SLUG = "bench-documents"


def digest_of(entry_uuid: uuid.UUID) -> str:
    """The bench document of an entry: a digest anyone can recompute from the entry id."""
    return hashlib.sha256(b"bench document " + entry_uuid.bytes).hexdigest()


def documents_ensure(size: int) -> AISystem:
    """One public document per sealed entry of the bench log, made once and kept.

    The bench log's entries are decision entries, and their leaves do not name these digests:
    the lookup reads the document table, its system and its entry, and the log position, and
    none of those reads depends on what the leaf holds. Loaded with one INSERT ... SELECT
    (PostgreSQL computes the digests), so that a million rows take seconds, not a Python loop.
    """
    system, _ = AISystem.objects.get_or_create(
        slug=SYSTEM_SLUG, defaults={"name": "Bench document registry", "is_public": True}
    )
    have = Document.objects.filter(system=system).count()
    if have >= size:
        say(f"reusing {have:,} bench documents")
        return system
    say(f"registering a document for each of {size:,} entries (once; cached)")
    clock = time.perf_counter()
    document, entry = Document._meta.db_table, Entry._meta.db_table
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {document} (system_id, entry_id, sha256, size, media_type, private, "  # noqa: S608
            f"file, registered_at) SELECT %s, e.seq, "
            f"encode(sha256('bench document '::bytea || decode(replace(e.uuid::text, '-', ''), "
            f"'hex')), 'hex'), 1000, 'application/pdf', false, '', now() FROM {entry} e "
            f"WHERE NOT EXISTS (SELECT 1 FROM {document} d WHERE d.entry_id = e.seq)",
            [system.pk],
        )
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {document}")
    say(f"  registered in {time.perf_counter() - clock:.0f} s")
    return system


def _request_timer(handler: WSGIHandler) -> Callable[[str, str], tuple[float, float, int]]:
    """Times one request through Django's WSGI handler, as a gunicorn worker calls it: every
    middleware, the view, its queries and the throttle's cache, and reading the body."""
    factory = RequestFactory()

    def timed(path: str, address: str) -> tuple[float, float, int]:
        """(wall seconds, CPU seconds of this process, HTTP status)."""
        environ = factory.get(path, secure=True, REMOTE_ADDR=address).environ
        environ["wsgi.input"] = io.BytesIO(b"")
        status: list[str] = []
        cpu, start = time.process_time(), time.perf_counter()
        body = b"".join(handler(environ, lambda s, headers, exc_info=None: status.append(s)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert body is not None
        return elapsed, cpu, int(status[0].split()[0])

    return timed


@contextlib.contextmanager
def redis_cache() -> Iterator[str]:
    """A redis-server of the bench's own as Django's cache, as production runs with REDIS_URL
    (the per-address limits count there); a shared Redis would mix in others' counts."""
    program = shutil.which("redis-server")
    if program is None:
        raise RuntimeError("the lookup benchmark starts its own redis-server: install redis-server")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="bench-lookup-redis-")
    server = subprocess.Popen(
        [program, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", folder],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as client:
                    client.sendall(b"PING\r\n")
                    if client.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        cache = {
            "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url}
        }
        with override_settings(CACHES=cache):
            yield url
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def _sample(count: int, seed: int) -> list[tuple[int, str]]:
    """(document id, digest) of `count` random registered documents (plus the warm-up)."""
    rng = random.Random(seed)
    latest = selectors.batch_latest()
    assert latest is not None
    seqs = [rng.randint(1, latest.last_seq) for _ in range(count + WARMUP)]
    by_seq = dict(Document.objects.filter(entry_id__in=seqs).values_list("entry_id", "id"))
    entry_uuids = dict(Entry.objects.filter(seq__in=seqs).values_list("seq", "uuid"))
    return [(by_seq[seq], digest_of(entry_uuids[seq])) for seq in seqs if seq in by_seq]


def _measure(sampled: list[tuple[int, str]], prefix: str) -> dict[str, list[float]]:
    """Seconds of each lookup kind and of the ceiling, round robin, so that noise on the shared
    machine hits all three alike. Each request comes from an address of its own: the limits do
    their cache work but never refuse."""
    timed = _request_timer(WSGIHandler())
    times: dict[str, list[float]] = {
        kind: [] for kind in ("floor", "api", "page", "api cpu", "page cpu")
    }
    with psycopg.connect(DATABASE_URL, autocommit=True) as bare:
        floor_sql = f"SELECT sha256, entry_id FROM {Document._meta.db_table} WHERE id = %s"  # noqa: S608
        for number, (document_id, digest) in enumerate(sampled):
            warm = number >= WARMUP
            address = f"{prefix}.{number >> 8 & 255}.{number & 255}"
            start = time.perf_counter()
            row = bare.execute(floor_sql, [document_id], prepare=True).fetchone()
            floor_seconds = time.perf_counter() - start
            assert row is not None and row[0] == digest
            api_seconds, api_cpu, status = timed(f"/api/v1/documents/{digest}", address)
            assert status == 200, status
            page_seconds, page_cpu, status = timed(f"/documents/{digest}", address)
            assert status == 200, status
            if warm:
                times["floor"].append(floor_seconds)
                times["api"].append(api_seconds)
                times["page"].append(page_seconds)
                times["api cpu"].append(api_cpu)
                times["page cpu"].append(page_cpu)
    return times


def _figures(times: dict[str, list[float]], label: str, *, target: bool) -> list[Figure]:
    floor_median = median(times["floor"]) * 1000
    floor_p99 = percentile(times["floor"], 0.99) * 1000
    say(
        f"  {'psycopg primary-key SELECT (the ceiling)':<46} median {floor_median:6.3f} ms   "
        f"p99 {floor_p99:6.3f} ms"
    )
    figures = []
    for kind, name in (
        ("api", "GET /api/v1/documents/{sha256}"),
        ("page", "GET /documents/{sha256} (portal page)"),
    ):
        middle, p99 = median(times[kind]) * 1000, percentile(times[kind], 0.99) * 1000
        # CPU time of this process alone: what the request costs without waiting for the
        # database or for a core on a busy machine.
        cpu = median(times[f"{kind} cpu"]) * 1000
        say(f"  {name:<46} median {middle:6.3f} ms   p99 {p99:6.3f} ms   (CPU median {cpu:.3f} ms)")
        figures.append(
            Figure(
                f"lookup{label}: {name}, p99",
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
    size = log_ensure()
    documents_ensure(size)
    kept = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = CONN_MAX_AGE
    try:
        return _run(size)
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = kept


def _run(size: int) -> list[Figure]:
    figures: list[Figure] = []
    with redis_cache():
        sampled = _sample(QUERIES, 4711)
        say(
            f"\n== lookup: {len(sampled) - WARMUP:,} random digests of {size:,} registered "
            "documents, server side, limits counted in Redis (production: REDIS_URL), "
            f"conn_max_age={CONN_MAX_AGE}"
        )
        figures += _figures(_measure(sampled, "10.1"), "", target=True)
    call_command("createcachetable", verbosity=0)
    sampled = _sample(PEER_QUERIES, 4712)
    say(
        f"\n== lookup peer: {len(sampled) - WARMUP:,} digests, limits counted in the database "
        "cache (the default without REDIS_URL)"
    )
    figures += _figures(_measure(sampled, "10.2"), " (database cache)", target=False)
    timed = _request_timer(WSGIHandler())
    seconds, _, status = timed(f"/api/v1/documents/{'0' * 64}", "10.255.255.254")
    assert status == 404, status
    say(f"  an unknown digest answered 404 in {seconds * 1000:.3f} ms")
    return figures
