"""Several sealer processes at once, beside live ingestion, seal every entry exactly once."""

from __future__ import annotations

import bisect
import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, transaction
from veridict_verify import merkle
from veridict_verify.receipt import receipt_verify

from timestamping import keys, selectors, tree
from timestamping.models import Anchor, Batch, Entry
from timestamping.services import batch_seal, entry_append

MANAGE = Path(settings.BASE_DIR) / "manage.py"
SEALERS = 4
MAX_ENTRIES = 137
BACKLOG = 2_000
# Every wait below is bounded so that a hung sealer fails the test instead of the CI job: the
# race as a whole gets RACE_SECONDS, stopping the sealers STOP_SECONDS more.
RACE_SECONDS = 45
STOP_SECONDS = 10


class RolledBack(Exception):
    """Raised inside an ingestion transaction to abandon it after it drew its seqs."""


def database_url() -> str:
    """DATABASE_URL of the test database (pytest-django has renamed it), for child processes."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        # settings put the SQLite test database in a file so that other processes can open it.
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = db["HOST"] or "localhost"
    return f"postgres://{user}{password}@{host}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def manage_start(*args: str, log: Path) -> subprocess.Popen[bytes]:
    """`manage.py <args>` against the test database; the log key and TSA files reach it through
    the VERIDICT_* variables that tests/conftest.py `ledger_keys` exported."""
    environment = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, str(MANAGE), *args],
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def sealed_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith("sealed batch ")]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)


def nothing_pending() -> bool:
    latest = selectors.batch_latest()
    return not Entry.objects.filter(seq__gt=latest.last_seq if latest else 0).exists()


def append(count: int, start: int = 0) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": start + i})[0] for i in range(count)]


class Ingestion(threading.Thread):
    """Appends entries on its own connection, in small transactions held open a while after they
    drew their seqs (so seals start while they are open), every fourth rolled back (seq gaps)."""

    def __init__(
        self, *, hold_seconds: float, min_rounds: int, until_tree_size: int, max_rounds: int
    ) -> None:
        super().__init__(name=f"ingestion-{hold_seconds}", daemon=True)
        self.hold_seconds = hold_seconds
        self.min_rounds = min_rounds
        self.until_tree_size = until_tree_size
        self.max_rounds = max_rounds
        self.committed: list[str] = []
        self.rolled_back: list[str] = []
        self.rolled_back_seqs: list[int] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            for round_number in range(self.max_rounds):
                if (
                    round_number >= self.min_rounds
                    and selectors.tree_size_current() >= self.until_tree_size
                ):
                    break
                uuids: list[str] = []
                seqs: list[int] = []
                try:
                    with transaction.atomic():
                        for i in range(5):
                            entry, _ = entry_append(
                                kind="live", envelope={"round": round_number, "i": i}
                            )
                            uuids.append(str(entry.uuid))
                            seqs.append(entry.seq)
                        # Held open with seqs drawn: what the PostgreSQL watermark must wait for.
                        time.sleep(self.hold_seconds)
                        if round_number % 4 == 3:
                            raise RolledBack
                except RolledBack:
                    self.rolled_back += uuids
                    self.rolled_back_seqs += seqs
                else:
                    self.committed += uuids
        except BaseException as exc:  # reported by the test, which cannot see this thread's stack
            self.error = exc
        finally:
            connection.close()


def batch_covering(batches: list[Batch], seq: int) -> Batch:
    """The batch whose (previous last_seq, last_seq] holds seq."""
    position = bisect.bisect_left([batch.last_seq for batch in batches], seq)
    assert position < len(batches), f"seq {seq} is past the last batch"
    return batches[position]


def assert_log_is_one_contiguous_chain(batches: list[Batch]) -> None:
    assert [batch.number for batch in batches] == list(range(1, len(batches) + 1))
    assert bytes(batches[0].prev_header_hash) == bytes(32)
    assert batches[0].prev_tree_size == 0 and batches[0].first_seq == 1
    for previous, batch in zip(batches, batches[1:], strict=False):
        assert bytes(batch.prev_header_hash) == bytes(previous.header_hash), batch
        assert batch.prev_tree_size == previous.tree_size, batch
        assert batch.first_seq == previous.last_seq + 1, batch
    for batch in batches:
        assert 0 < batch.tree_size - batch.prev_tree_size <= MAX_ENTRIES, batch


# `transactional_db` (by name: tests/conftest.py lifts the append-only triggers for its flush only
# then): the sealer processes must see committed rows.
@pytest.mark.slow
def test_four_sealer_processes_and_live_ingestion_seal_every_entry_exactly_once(
    transactional_db, tmp_path, tsa_ca_pem
):
    started = time.monotonic()
    with transaction.atomic():
        backlog = append(BACKLOG)
    logs = [tmp_path / f"sealer-{n}.log" for n in range(SEALERS)]
    sealers = [
        manage_start("seal", "--max-entries", str(MAX_ENTRIES), "--loop", "0.05", log=log)
        for log in logs
    ]
    # Two writers holding their transactions open for different times, so that later seqs often
    # commit before earlier ones: the order a sealer must not be fooled by.
    writers = [
        Ingestion(hold_seconds=hold, min_rounds=30, until_tree_size=BACKLOG, max_rounds=150)
        for hold in (0.02, 0.002)
    ]
    deadline = time.monotonic() + RACE_SECONDS
    try:
        # Ingestion starts once sealing has, so that entries commit while seals are under way.
        wait_for(
            lambda: Batch.objects.exists() or any(s.poll() is not None for s in sealers),
            deadline - time.monotonic(),
            "the first batch",
        )
        for writer in writers:
            writer.start()
        wait_for(
            lambda: (
                (not any(writer.is_alive() for writer in writers) and nothing_pending())
                or any(s.poll() is not None for s in sealers)
            ),
            deadline - time.monotonic(),
            "the sealers to seal everything",
        )
        exited = [
            log.read_text()[-2000:]
            for s, log in zip(sealers, logs, strict=True)
            if s.poll() is not None
        ]
        assert not exited, f"a sealer stopped before it was asked to: {exited}"
        for sealer in sealers:
            sealer.send_signal(signal.SIGINT)
        for sealer, log in zip(sealers, logs, strict=True):
            assert sealer.wait(timeout=STOP_SECONDS) == 0, log.read_text()[-2000:]
            # Interrupted between seals, not in one: the seal under way finished first.
            assert log.read_text().rstrip().endswith("stopped"), log.read_text()[-2000:]
    finally:
        for sealer in sealers:
            if sealer.poll() is None:
                sealer.kill()
                sealer.wait(timeout=STOP_SECONDS)
        for writer in writers:
            if writer.ident is not None:  # started
                writer.join(timeout=STOP_SECONDS)
    assert [writer.error for writer in writers] == [None, None]
    committed = [uuid for writer in writers for uuid in writer.committed]
    rolled_back = [uuid for writer in writers for uuid in writer.rolled_back]
    assert all(writer.committed for writer in writers), "a writer appended nothing meanwhile"

    batches = list(Batch.objects.order_by("number"))
    assert_log_is_one_contiguous_chain(batches)

    entries = list(Entry.objects.order_by("seq").values_list("seq", "uuid", "leaf_hash"))
    sealed_past = [
        seq for seq, _, _ in entries if batch_covering(batches, seq).skipped.contains(seq)
    ]
    assert not sealed_past, f"entries recorded as skipped, never to be sealed: seqs {sealed_past}"
    rolled_back_seqs = {seq for writer in writers for seq in writer.rolled_back_seqs}
    # Seqs below the backlog were drawn by earlier tests, whose transactions rolled back.
    skipped = {
        seq
        for batch in batches
        for first, last in batch.skipped_ranges
        for seq in range(max(first, backlog[0].seq + 1), last + 1)
    }
    unexplained = sorted(skipped - rolled_back_seqs)
    assert not unexplained, f"skipped seqs that no rolled-back transaction drew: {unexplained}"
    total = batches[-1].tree_size
    assert len(entries) == total == BACKLOG + len(committed)
    stored = {str(entry_uuid) for _, entry_uuid, _ in entries}
    assert set(committed) <= stored
    assert not set(rolled_back) & stored

    leaves: dict[int, bytes] = {}
    for seq, _, leaf_hash in entries:
        batch = batch_covering(batches, seq)
        leaf_index = batch.leaf_index_of(seq)
        assert batch.prev_tree_size <= leaf_index < batch.tree_size, (seq, batch)
        assert batch.seq_at(leaf_index) == seq
        assert leaf_index not in leaves, f"leaf index {leaf_index} given to two entries"
        leaves[leaf_index] = bytes(leaf_hash)
    assert sorted(leaves) == list(range(total))

    in_order = [leaves[i] for i in range(total)]
    assert bytes(batches[-1].root) == merkle.root_from_leaves(in_order)
    for batch in batches:
        # Each batch's root, as stored and as the tiles the racing sealers wrote give it.
        prefix_root = merkle.root_from_leaves(in_order[: batch.tree_size])
        assert bytes(batch.root) == prefix_root == tree.tree_root(batch.tree_size), batch
    assert Anchor.objects.filter(tsa="builtin").count() == len(batches)

    if connection.vendor == "postgresql":
        # Rolled-back ingestion left holes in the sequence, which seals must have recorded.
        assert skipped, "no rolled-back seq was recorded: the gap handling went untested"
    newest = Entry.objects.order_by("-seq").first()
    report = receipt_verify(
        selectors.receipt_get(entry=newest), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
    )
    assert report.ok, report.steps

    per_sealer = [len(sealed_lines(log)) for log in logs]
    assert sum(per_sealer) == len(batches)
    print(  # shown with -s: how the work spread, and the time the whole race took
        f"{connection.vendor}: {len(batches)} batches, {total} leaves, "
        f"{len(skipped)} skipped seqs of {len(rolled_back)} rolled back, "
        f"batches per sealer {per_sealer}, "
        f"{time.monotonic() - started:.1f} s"
    )


class StalledAppend(threading.Thread):
    """Appends one entry on its own database connection and keeps that transaction open until
    told to commit: a request that drew its seq, then stalled."""

    def __init__(self) -> None:
        super().__init__(name="stalled-append", daemon=True)
        self.appended = threading.Event()
        self.commit = threading.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic():
                self.entry, _ = entry_append(kind="stalled", envelope={"stalled": True})
                self.appended.set()
                if not self.commit.wait(timeout=RACE_SECONDS):
                    raise TimeoutError("the test never let the stalled transaction commit")
        except BaseException as exc:
            self.error = exc
            self.appended.set()
        finally:
            connection.close()


def backend_waits_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        (waiting,) = cursor.fetchone()
    return waiting > 0


@pytest.mark.postgres
def test_a_seal_never_passes_over_an_entry_whose_transaction_is_still_open(
    transactional_db, tmp_path, tsa_ca_pem
):
    # PostgreSQL draws a seq outside the transaction that uses it, so a later seq can commit
    # first: a sealer that trusted max(seq) would seal past the open one and call it skipped.
    (first,) = append(1)
    stalled = StalledAppend()
    stalled.start()
    log = tmp_path / "sealer.log"
    sealer: subprocess.Popen[bytes] | None = None
    try:
        assert stalled.appended.wait(timeout=10) and stalled.error is None, stalled.error
        (later,) = append(1)  # commits while the stalled transaction is still open
        assert first.seq < stalled.entry.seq < later.seq

        sealer = manage_start("seal", log=log)
        wait_for(
            lambda: sealer.poll() is not None or backend_waits_for_a_lock(),
            RACE_SECONDS,
            "the seal to finish or to wait for the open transaction",
        )
        waited = sealer.poll() is None
        if not waited:
            # Leaving the open entry for later is also correct; sealing past it is not.
            for batch in Batch.objects.all():
                assert batch.last_seq < stalled.entry.seq, log.read_text()
        stalled.commit.set()
        stalled.join(timeout=STOP_SECONDS)
        assert stalled.error is None, repr(stalled.error)
        assert sealer.wait(timeout=RACE_SECONDS) == 0, log.read_text()
    finally:
        stalled.commit.set()
        if sealer is not None and sealer.poll() is None:
            sealer.kill()
            sealer.wait(timeout=STOP_SECONDS)
    batch_seal()  # seals whatever the first seal left for later

    batches = list(Batch.objects.order_by("number"))
    assert_log_is_one_contiguous_chain(batches)
    assert not any(batch.skipped.contains(stalled.entry.seq) for batch in batches)
    indices = {}
    for entry in (first, stalled.entry, later):
        batch = selectors.batch_of_entry(entry=entry)
        assert batch is not None, f"{entry} is still pending"
        indices[entry.seq] = batch.leaf_index_of(entry.seq)
        assert batch.seq_at(indices[entry.seq]) == entry.seq
    assert sorted(indices.values()) == [0, 1, 2]
    print("the seal", "waited for" if waited else "left for later", "the open transaction")
    report = receipt_verify(
        selectors.receipt_get(entry=stalled.entry),
        keys=[keys.verifier_key()],
        tsa_ca_pem=tsa_ca_pem,
    )
    assert report.ok, report.steps


@pytest.mark.django_db
def test_the_seal_command_prints_each_batch_number_and_tree_size():
    append(3)
    outputs = []
    for _ in range(3):
        output = io.StringIO()
        call_command("seal", max_entries=2, stdout=output)
        outputs.append(output.getvalue().strip())
    assert outputs == [
        "sealed batch 1: tree size 2 (2 entries)",
        "sealed batch 2: tree size 3 (1 entry)",
        "nothing to seal: tree size 3",
    ]
