"""Real services for the Celery integration tests: a redis-server of the test's own, Celery worker
and beat processes on the test database, and bounded waits."""

from __future__ import annotations

import bisect
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from veridict_verify import merkle

from tests.conftest import missing
from tests.integration.test_concurrent_sealers import database_url
from timestamping.anchor_backends import BUILTIN
from timestamping.models import Batch, Entry

START_SECONDS = 40
STOP_SECONDS = 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition: Callable[[], bool], seconds: float, what: str) -> float:
    """Polls until condition() holds; fails the test after `seconds`. Returns the time waited."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > seconds:
            pytest.fail(f"gave up after {seconds} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


def require_program(name: str) -> str:
    """The program's path; skips the test when it is missing on a laptop, fails it under CI."""
    path = shutil.which(name)
    if path is None:
        missing(f"{name} is not installed")
    return path


class RedisServer:
    """A redis-server on a free loopback port, without persistence: stopping it loses every
    message it held, as a crashed broker without AOF does."""

    def __init__(self, directory: Path) -> None:
        self.program = require_program("redis-server")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.program,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        wait_for(self.answers, START_SECONDS, f"redis-server on port {self.port}")

    def answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as client:
                client.sendall(b"PING\r\n")
                return client.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=STOP_SECONDS)
        self.process = None


def celery_environment(*, redis_url: str, var_dir: Path, **variables: str) -> dict[str, str]:
    """The environment of a worker or beat on the test database and this Redis; the log key, TSA
    and master key files come from the VERIDICT_* variables tests/conftest.py `ledger_keys`
    exported. `variables` are more settings (VERIDICT_SEAL_INTERVAL=...)."""
    # Settings create the folder only for SQLite; beat needs it for its schedule file.
    var_dir.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "DATABASE_URL": database_url(),
        "REDIS_URL": redis_url,
        # Beat's schedule file lives there; one per test, so no test inherits another's runs.
        "VERIDICT_VAR_DIR": str(var_dir),
        # Production's value: with DEBUG, a long-lived worker keeps the text of every query.
        "DJANGO_DEBUG": "false",
        "PYTHONUNBUFFERED": "1",
        **variables,
    }


class CeleryProcess:
    """`celery -A veridict worker` or `beat` in a process group of its own, logging to a file, so
    that a test can kill it as a power cut would: the main process and its pool together."""

    def __init__(self, role: str, *, environment: dict[str, str], log: Path, name: str) -> None:
        self.role = role
        self.environment = environment
        self.log = log
        self.name = name
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "celery", "-A", "veridict", self.role, "--loglevel", "INFO"]
        if self.role == "beat":
            return base
        # One pool process, so that "the process that is sealing" is one known pid; gossip and
        # mingle (workers comparing notes) only slow each start, and nothing here needs them.
        return base + [
            "--concurrency",
            "1",
            "--hostname",
            f"{self.name}@%h",
            "--without-gossip",
            "--without-mingle",
        ]

    def start(self, *, wait: bool = True) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} runs"
        self.starts += 1
        with self.log.open("ab") as output:
            output.write(f"\n===== start {self.starts} =====\n".encode())
            output.flush()
            self.process = subprocess.Popen(
                self.command(),
                cwd=settings.BASE_DIR,
                env=self.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        marker = "ready." if self.role == "worker" else "beat: Starting..."
        start_marker = f"===== start {self.starts} ====="

        def ready() -> bool:
            if self.process is None or self.process.poll() is not None:
                pytest.fail(f"{self.name} exited at its start:\n{self.log_tail()}")
            return marker in self.log_text().rsplit(start_marker, 1)[-1]

        wait_for(ready, START_SECONDS, f"{self.name} to start")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def pool_pids(self) -> list[int]:
        """The worker's pool processes (its children)."""
        assert self.process is not None
        return children_of(self.process.pid)

    def kill(self) -> None:
        """SIGKILL to the whole process group: nothing gets to finish or clean up."""
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=STOP_SECONDS)

    def stop(self) -> None:
        """A warm shutdown (SIGTERM), then SIGKILL if it does not end in time."""
        if not self.running:
            return
        assert self.process is not None
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.kill()
        except ProcessLookupError:
            pass
        # Pool processes the warm shutdown left behind must not outlive the test.
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]


def children_of(pid: int) -> list[int]:
    """Pids whose parent is pid (Linux /proc)."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the fields after it are fixed.
        fields = stat.rsplit(")", 1)[-1].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def manage_run(*args: str, environment: dict[str, str], seconds: float = 60) -> str:
    """`manage.py <args>` in a subprocess with this environment; its output, or the test fails
    with it."""
    result = subprocess.run(
        [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        timeout=seconds,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)}:\n{result.stdout}{result.stderr}"
    return result.stdout


def ledger_assert_sealed_exactly_once(*, acknowledged: set[str], max_entries: int) -> list[Batch]:
    """Asserts one unforked chain of batches without gaps, in which every stored entry, and every
    acknowledged one, has exactly one leaf index; returns the batches."""
    batches = list(Batch.objects.order_by("number"))
    assert batches, "nothing was sealed"
    assert [batch.number for batch in batches] == list(range(1, len(batches) + 1))
    assert bytes(batches[0].prev_header_hash) == bytes(32) and batches[0].prev_tree_size == 0
    for previous, batch in zip(batches, batches[1:], strict=False):
        assert bytes(batch.prev_header_hash) == bytes(previous.header_hash), batch
        assert batch.prev_tree_size == previous.tree_size, batch
        assert batch.first_seq == previous.last_seq + 1, batch
    for batch in batches:
        assert 0 < batch.tree_size - batch.prev_tree_size <= max_entries, batch

    entries = list(Entry.objects.order_by("seq").values_list("seq", "uuid", "leaf_hash"))
    stored = {str(entry_uuid) for _, entry_uuid, _ in entries}
    lost = acknowledged - stored
    assert not lost, f"{len(lost)} acknowledged entries are gone"
    last_seqs = [batch.last_seq for batch in batches]
    passed_over = [
        seq
        for seq, _, _ in entries
        if (at := bisect.bisect_left(last_seqs, seq)) < len(batches)
        and batches[at].skipped.contains(seq)
    ]
    assert not passed_over, f"entries passed over as skipped: seqs {passed_over}"
    leaves: dict[int, bytes] = {}
    for seq, _, leaf_hash in entries:
        position = bisect.bisect_left(last_seqs, seq)
        assert position < len(batches), f"seq {seq} was never sealed"
        batch = batches[position]
        leaf_index = batch.leaf_index_of(seq)
        assert batch.prev_tree_size <= leaf_index < batch.tree_size, (seq, batch)
        assert leaf_index not in leaves, f"leaf index {leaf_index} given to two entries"
        leaves[leaf_index] = bytes(leaf_hash)
    total = batches[-1].tree_size
    assert sorted(leaves) == list(range(total)) and len(entries) == total
    assert bytes(batches[-1].root) == merkle.root_from_leaves([leaves[i] for i in range(total)])
    return batches


def everything_sealed() -> bool:
    latest = Batch.objects.order_by("-number").first()
    return not Entry.objects.filter(seq__gt=latest.last_seq if latest else 0).exists()


def everything_stamped() -> bool:
    """Every batch has its built-in time-stamp."""
    return not Batch.objects.exclude(anchors__backend=BUILTIN).exists()
