"""What the ledger benchmarks share: the bench database and keys, loading entries, the 1M log."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import random
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

# The benchmarks always run against their own database, never the one DATABASE_URL names for the
# application, because they add a million entries and delete what the seal benchmark adds.
DATABASE_URL = os.environ.get(
    "VERIDICT_BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/veridict_bench"
)
DATABASE_NAME = urllib.parse.urlsplit(DATABASE_URL).path.lstrip("/")
# Keys live next to the database they signed: a cached log is only usable with the log key and
# TSA CA that signed it, so both survive between runs in the temporary directory.
STATE_DIR = Path(
    os.environ.get("VERIDICT_BENCH_DIR", Path(tempfile.gettempdir()) / "veridict-bench")
)
KEY_DIR = STATE_DIR / DATABASE_NAME / "keys"
KEY_FILES = {
    "LOG_SIGNING_KEY_FILE": KEY_DIR / "log-signing.pem",
    "TSA_KEY_FILE": KEY_DIR / "tsa-key.pem",
    "TSA_CERT_FILE": KEY_DIR / "tsa-cert.pem",
    "TSA_CA_CERT_FILE": KEY_DIR / "tsa-ca.pem",
}
LOG_SIZE = int(os.environ.get("VERIDICT_BENCH_LOG_SIZE", "1000000"))
CHUNK = 100_000
# How the last chunk of the log is sealed: a few large batches, then many small ones, as a log
# that the beat seals every few seconds ends up after a burst of traffic.
TAIL_BATCHES = [60_000, 30_000, 9_000] + [10] * 100

os.environ["DATABASE_URL"] = DATABASE_URL
os.environ["VERIDICT_VAR_DIR"] = str(STATE_DIR / DATABASE_NAME / "var")
os.environ["VERIDICT_LOG_SIGNING_KEY"] = ""  # the key file below, not a key from the environment
for _setting, _path in KEY_FILES.items():
    os.environ[f"VERIDICT_{_setting}"] = str(_path)
# Production runs with DEBUG off; with it on, Django keeps the text of every query (megabytes for
# one tile insert), which is not what a deployed sealer pays.
os.environ["DJANGO_DEBUG"] = "false"
# Production refuses to start without a secret key; a throwaway one serves every process of a run.
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
# The log is loaded far faster than traffic arrives, and on a busy machine making 100,000 entries
# takes longer than the default 60 s maximum merge delay that every SET promises; the receipts the
# verify benchmark checks would then rightly fail. The bench log promises an hour instead.
os.environ.setdefault("VERIDICT_MMD_SECONDS", "3600")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "veridict.settings")

import django  # noqa: E402 -- settings read the environment set just above

django.setup()

import psycopg  # noqa: E402
import structlog  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, connections, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402
from veridict_verify import merkle  # noqa: E402
from veridict_verify.formats import SignedEntryTimestamp, format_time  # noqa: E402

from audit import vault  # noqa: E402
from timestamping import keys, selectors  # noqa: E402
from timestamping.models import (  # noqa: E402
    Anchor,
    AnchorReorg,
    Batch,
    Entry,
    LogKey,
    StreamHead,
    StreamMark,
    Tile,
)
from timestamping.services import batch_seal  # noqa: E402
from timestamping.services.anchoring import batch_anchor_missing  # noqa: E402
from timestamping.services.entries import leaf_canonical  # noqa: E402

# The sealer logs one line per batch; a hundred tail batches would bury the figures.
structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))

ENTRY_TABLE = Entry._meta.db_table
EntryRow = tuple[uuid.UUID, str, datetime, bytes, bytes, str, str]  # COPY column order below
# The bench log is one global tree: its entries name no stream (""), unless a benchmark asks.
ENTRY_COLUMNS = "uuid, kind, received_at, canonical, leaf_hash, set_note, stream"


@dataclass(frozen=True)
class Figure:
    """One line of the final table; ratio is value over ceiling, oriented so that 1.0 is best."""

    name: str
    value: float
    unit: str
    ceiling: float | None
    ratio: float | None
    target: str = "-"
    passed: bool | None = None


def say(text: str) -> None:
    print(text, flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: the smallest value that `fraction` of the values do not exceed."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def in_own_database(module: str, suffix: str) -> list[Figure]:
    """Runs `python -m <module> OUT` against the bench database named with `suffix` (created and
    kept like the bench database) and returns the figures its child writes with
    figures_write: a benchmark whose cached data would change what the shared bench log is
    (a system log of its own, 1M decisions) keeps it apart."""
    parts = urllib.parse.urlsplit(DATABASE_URL)
    url = urllib.parse.urlunsplit(parts._replace(path=f"/{DATABASE_NAME}_{suffix}"))
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "figures.json"
        environment = dict(os.environ, VERIDICT_BENCH_DATABASE_URL=url)
        # The parent's own database must not leak into the child's Django settings.
        environment.pop("DATABASE_URL", None)
        subprocess.run([sys.executable, "-m", module, str(out)], env=environment, check=True)
        return [Figure(**fields) for fields in json.loads(out.read_text())]


def figures_write(figures: list[Figure], out: str) -> None:
    """In a child of in_own_database: hands its figures to the parent."""
    Path(out).write_text(json.dumps([dataclasses.asdict(figure) for figure in figures]))


# --- The bench database and keys -----------------------------------------------------------------


def _maintenance_url() -> str:
    parts = urllib.parse.urlsplit(DATABASE_URL)
    return urllib.parse.urlunsplit(parts._replace(path="/postgres"))


def _database_create() -> None:
    from psycopg import sql

    with psycopg.connect(_maintenance_url(), autocommit=True) as server:
        if server.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]
        ).fetchone():
            return
        server.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE_NAME)))
        say(f"created database {DATABASE_NAME}")


def _database_drop() -> None:
    from psycopg import sql

    connections.close_all()
    with psycopg.connect(_maintenance_url(), autocommit=True) as server:
        server.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DATABASE_NAME))
        )
    keys.published_keys.clear()


def _keys_create() -> None:
    """A throwaway log key and built-in TSA for the bench log (the ledger_keys fixture's recipe)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from timestamping import tsa

    if all(path.exists() for path in KEY_FILES.values()):
        return
    # A half-made key folder (an interrupted run) cannot sign for the log it belongs to: start over.
    shutil.rmtree(KEY_DIR, ignore_errors=True)
    KEY_DIR.mkdir(parents=True, mode=0o700)
    keys.write_secret(
        KEY_FILES["LOG_SIGNING_KEY_FILE"], keys.private_key_pem(Ed25519PrivateKey.generate())
    )
    tsa.tsa_create(
        key_file=KEY_FILES["TSA_KEY_FILE"],
        cert_file=KEY_FILES["TSA_CERT_FILE"],
        ca_cert_file=KEY_FILES["TSA_CA_CERT_FILE"],
    )
    say(f"created a throwaway log key and TSA in {KEY_DIR}")


def _migrate() -> None:
    call_command("migrate", verbosity=0, interactive=False)


_prepared = False


def prepare() -> None:
    """Makes the bench database, its schema and keys ready, and clears what a killed run left."""
    global _prepared
    if _prepared:
        return
    _keys_create()
    _database_create()
    _migrate()
    current = str(keys.verifier_key())
    known = set(LogKey.objects.values_list("verifier_key", flat=True))
    if known and current not in known:
        # Its receipts could no longer be checked against a pinned key and TSA CA.
        say(f"{DATABASE_NAME} was signed by keys no longer in {KEY_DIR}: dropping it to rebuild")
        _database_drop()
        _database_create()
        _migrate()
    _pending_discard()
    # A stamp lost between a seal's commit and its after-commit callback (a killed run).
    batch_anchor_missing()
    _prepared = True


MASTER_KEY_FILE = KEY_DIR / "master.key"


def master_key_use() -> None:
    """The bench's own master key, kept beside its log key; servers and commands the benchmark
    starts read it from the file (the environment is set for them too)."""
    if not MASTER_KEY_FILE.exists():
        keys.write_secret(MASTER_KEY_FILE, vault.master_key_text(vault.data_key_new()).encode())
    os.environ["VERIDICT_MASTER_KEY"] = ""
    os.environ["VERIDICT_MASTER_KEY_FILE"] = str(MASTER_KEY_FILE)
    settings.MASTER_KEY = ""
    settings.MASTER_KEY_FILE = MASTER_KEY_FILE


# --- Entries -------------------------------------------------------------------------------------


def _envelope(rng: random.Random, number: int) -> dict[str, object]:
    """What the audit domain commits to for one decision: digests and salted commitments only."""

    def digest() -> str:
        return f"{rng.getrandbits(256):064x}"

    return {
        "system": f"loan-scorer-{number % 7}",
        "system_version": "2026.11.3",
        "input_sha256": digest(),
        "output_sha256": digest(),
        "subject_commitment": digest(),
        "explanation_commitment": digest(),
        "outcome": "approved" if number % 3 else "declined",
        "score": rng.randrange(1000),
        "threshold": 600,
        "human_review": number % 11 == 0,
    }


def entries_make(
    count: int, *, seed: int | None = None, streams: Sequence[str] = ()
) -> list[EntryRow]:
    """Entries as entry_append makes them: RFC 8785 leaves over fresh ids and real signed SETs.

    With `streams`, entry number i belongs to streams[i % len(streams)]: its leaf names the
    stream, as the audit domain's leaves name their system log, and its `stream` column is set."""
    rng = random.Random(seed)
    rows: list[EntryRow] = []
    for number in range(count):
        stream = streams[number % len(streams)] if streams else ""
        entry_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        received_at = timezone.now()
        received_text = format_time(received_at)
        canonical = leaf_canonical(
            entry_id=entry_id,
            kind="decision",
            received_at=received_text,
            envelope=_envelope(rng, number),
            stream=stream,
        )
        leaf_hash = merkle.leaf_hash(canonical)
        promise = SignedEntryTimestamp(
            origin=settings.LOG_ORIGIN,
            leaf_hash=leaf_hash,
            received_at=received_text,
            mmd_seconds=settings.MMD_SECONDS,
        )
        rows.append(
            (
                entry_id,
                "decision",
                received_at,
                canonical,
                leaf_hash,
                keys.sign(promise.body()),
                stream,
            )
        )
    return rows


def entries_copy(rows: Sequence[EntryRow]) -> None:
    """Loads entries in one COPY (one transaction); the database hands out their seqs."""
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(
            f"COPY {ENTRY_TABLE} ({ENTRY_COLUMNS}) FROM STDIN"  # noqa: S608 - a model's table name
        ) as copy,
    ):
        for row in rows:
            copy.write_row(row)


# --- Undoing what a benchmark added --------------------------------------------------------------


@dataclass(frozen=True)
class LogMark:
    """The newest row of each ledger table at one moment, to go back to."""

    last_seq: int
    tile_id: int
    batch_number: int
    anchor_id: int


def log_mark() -> LogMark:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT (SELECT coalesce(max(seq), 0) FROM {ENTRY_TABLE}),"  # noqa: S608
            f" (SELECT coalesce(max(id), 0) FROM {Tile._meta.db_table}),"
            f" (SELECT coalesce(max(number), 0) FROM {Batch._meta.db_table}),"
            f" (SELECT coalesce(max(id), 0) FROM {Anchor._meta.db_table})"
        )
        last_seq, tile_id, batch_number, anchor_id = cursor.fetchone()
    return LogMark(last_seq, tile_id, batch_number, anchor_id)


def log_revert(mark: LogMark) -> None:
    """Deletes every ledger row added since the mark and rewinds the entry sequence to it.

    The append-only triggers (migration 0002) refuse these DELETEs, so this transaction turns them
    off with `SET LOCAL session_replication_role = replica` (which also skips the foreign-key
    triggers). Only the throwaway bench database is ever tampered with like this.
    """
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute(
            f"DELETE FROM {AnchorReorg._meta.db_table} WHERE anchor_id > %s",  # noqa: S608
            [mark.anchor_id],
        )
        cursor.execute(f"DELETE FROM {Anchor._meta.db_table} WHERE id > %s", [mark.anchor_id])  # noqa: S608
        # Stream heads of the benchmark's decisions (their batches go next).
        cursor.execute(
            f"DELETE FROM {StreamHead._meta.db_table} WHERE batch_id IN "  # noqa: S608
            f"(SELECT id FROM {Batch._meta.db_table} WHERE number > %s)",
            [mark.batch_number],
        )
        cursor.execute(f"DELETE FROM {Batch._meta.db_table} WHERE number > %s", [mark.batch_number])  # noqa: S608
        # Stream tiles go with the global ones below (same table, later ids); the stream marks
        # of the deleted entries go here.
        cursor.execute(
            f"DELETE FROM {StreamMark._meta.db_table} WHERE seq > %s",  # noqa: S608
            [mark.last_seq],
        )
        cursor.execute(f"DELETE FROM {Tile._meta.db_table} WHERE id > %s", [mark.tile_id])  # noqa: S608
        cursor.execute(f"DELETE FROM {ENTRY_TABLE} WHERE seq > %s", [mark.last_seq])  # noqa: S608
        # Rewound, so that the next entries continue the sealed ones: a gap would be sealed as a
        # range of skipped seqs, which is not what the benchmark measures.
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'seq'), %s, %s)",
            [ENTRY_TABLE, max(mark.last_seq, 1), mark.last_seq > 0],
        )
    # The deleted rows would otherwise sit in the indexes the next repetition scans.
    with connection.cursor() as cursor:
        for model in (Entry, Tile, Batch, Anchor, StreamHead, StreamMark):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")


def _pending_discard() -> None:
    """Drops entries no batch covers: loaded by a run that was stopped before it sealed them."""
    latest = selectors.batch_latest()
    last_seq = latest.last_seq if latest else 0
    if Entry.objects.filter(seq__gt=last_seq).exists():
        say("discarding the unsealed entries a stopped run left behind")
        mark = log_mark()
        log_revert(LogMark(last_seq, mark.tile_id, mark.batch_number, mark.anchor_id))


# --- The bench log ------------------------------------------------------------------------------


def log_ensure(size: int = LOG_SIZE, *, stream: str = "") -> int:
    """Builds the bench log up to `size` sealed entries once, later runs reuse it; its size.

    With `stream`, every entry belongs to that one stream, so the database then holds a system
    log of `size` entries (its global log is the same leaves); the stream_proofs benchmark keeps
    it in a database of its own, so the other figures keep meaning what bench/README.md says."""
    what = f"bench system log (stream {stream})" if stream else "bench log"
    current = selectors.tree_size_current()
    if current >= size:
        batches = Batch.objects.count()
        say(
            f"reusing the cached {what} in {DATABASE_NAME}: "
            f"{current:,} sealed entries, {batches} batches"
        )
        return current
    say(f"building the {what} in {DATABASE_NAME}: {current:,} -> {size:,} entries (once; cached)")
    started = time.perf_counter()
    generating = copying = sealing = 0.0
    while current < size:
        count = min(CHUNK, size - current)
        last = current + count >= size
        clock = time.perf_counter()
        # Generated right before sealing: each SET promises a seal within the maximum merge delay,
        # and the receipts the verify benchmark checks hold the log to that promise.
        rows = entries_make(count, streams=[stream] if stream else ())
        generating += time.perf_counter() - clock
        clock = time.perf_counter()
        entries_copy(rows)
        copying += time.perf_counter() - clock
        clock = time.perf_counter()
        sizes = TAIL_BATCHES if last and count == sum(TAIL_BATCHES) else [count]
        for batch_size in sizes:
            batch = batch_seal(max_entries=batch_size)
            assert batch is not None
        sealing += time.perf_counter() - clock
        current = selectors.tree_size_current()
        say(f"  {current:>9,} entries sealed  ({time.perf_counter() - started:6.1f} s)")
    _log_check(current, stream=stream)
    with connection.cursor() as cursor:
        for model in (Entry, Tile, Batch, Anchor, StreamHead, StreamMark):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    elapsed = time.perf_counter() - started
    say(
        f"built the bench log in {elapsed:.0f} s (making entries {generating:.0f} s, "
        f"COPY {copying:.0f} s, sealing {sealing:.0f} s, checks and VACUUM the rest)"
    )
    return current


def _log_check(size: int, *, stream: str = "") -> None:
    """Refuses to benchmark a log whose stored tree or receipts are wrong."""
    from veridict_verify.note import VerifierKey
    from veridict_verify.receipt import receipt_verify

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT leaf_hash FROM {ENTRY_TABLE} ORDER BY seq")  # noqa: S608
        leaf_hashes = [bytes(leaf_hash) for (leaf_hash,) in cursor.fetchall()]
    latest = selectors.batch_latest()
    assert latest is not None and len(leaf_hashes) == size == latest.tree_size
    if merkle.root_from_leaves(leaf_hashes) != bytes(latest.root):
        raise AssertionError("the stored root is not the root of the stored leaves")
    if stream:
        head = StreamHead.objects.filter(stream=stream).order_by("-size").first()
        assert head is not None and head.size == size, head
        if bytes(head.root) != merkle.root_from_leaves(leaf_hashes):
            raise AssertionError(f"the root of stream {stream} is not the root of its leaves")
    pinned = [
        VerifierKey.parse(text) for text in LogKey.objects.values_list("verifier_key", flat=True)
    ]
    ca_pem = Path(settings.TSA_CA_CERT_FILE).read_bytes()
    # The first entry of a batch waited longest for its seal: the maximum merge delay's worst case.
    for batch in Batch.objects.order_by("number"):
        entry = Entry.objects.filter(seq__gte=batch.first_seq).order_by("seq").first()
        report = receipt_verify(selectors.receipt_get(entry=entry), keys=pinned, tsa_ca_pem=ca_pem)
        if not report.ok:
            raise AssertionError(
                f"a receipt in batch {batch.number} does not verify: {report.steps}"
            )
    say(
        f"  checked: root of all {size:,} leaves{', and of the stream' if stream else ''}, "
        "and a receipt of every batch verifies"
    )


@contextlib.contextmanager
def phases_timed(phases: Sequence[tuple[Any, str, str]]) -> Iterator[dict[str, float]]:
    """Seconds spent in each phase (owner, attribute, name) of what runs inside, measured by
    patching those attributes; the code measured is not touched. owner None is the connection."""
    spent: dict[str, float] = defaultdict(float)
    active = [False]

    def timed(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            # A phase inside another (the anchor's own commit inside the TSA stamp) counts there.
            if active[0]:
                return function(*args, **kwargs)
            active[0] = True
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - start
                active[0] = False

        return wrapper

    with contextlib.ExitStack() as stack:
        for owner, attribute, name in phases:
            # The commit is the connection's: Atomic.__exit__ -> connection.commit() -> _commit().
            target = owner if owner is not None else connections["default"]
            stack.enter_context(
                mock.patch.object(target, attribute, timed(name, getattr(target, attribute)))
            )
        yield spent
