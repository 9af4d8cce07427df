"""Ingest → sealed and ingest → stamped latency with a real Celery worker and beat on Redis and
PostgreSQL, default settings, at a steady entry rate."""

from __future__ import annotations

import bisect
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db import connection

import bench
from bench import Figure, log_mark, log_revert, median, percentile, say
from timestamping import selectors
from timestamping.models import Anchor, AnchorJob, Batch, Entry
from timestamping.services import entry_append

RATE = float(os.environ.get("VERIDICT_BENCH_LATENCY_RATE", "200"))
SECONDS = float(os.environ.get("VERIDICT_BENCH_LATENCY_SECONDS", "60"))
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_LATENCY_REPS", "3")))
# Threads that append, each on its own connection: one commit (an fsync) per entry costs a few
# milliseconds, so one thread alone could not keep 200 entries/s on time.
APPENDERS = 4
TARGET_P99_SECONDS = 15.0
# How often the observer looks for new batches and stamps: the resolution of the figures.
POLL_SECONDS = 0.05
# Longest wait for the last entries to be sealed and stamped once ingestion stops.
DRAIN_SECONDS = 60.0
START_SECONDS = 60.0


# --- Redis, worker and beat ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as client:
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class CeleryStack:
    """Production's processes but the web: a redis-server of the bench's own (a shared Redis could
    hand these tasks to another worker on another database), `celery -A veridict worker` and
    `celery -A veridict beat`, as the README starts them, on the bench database."""

    variables: dict[str, str] = field(default_factory=dict)
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-celery-")))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    environment: dict[str, str] | None = None

    def __enter__(self) -> CeleryStack:
        try:
            self._start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _start(self) -> None:
        program = shutil.which("redis-server")
        if program is None:
            raise RuntimeError("this benchmark starts its own redis-server: install redis-server")
        port = _free_port()
        self._spawn(
            "redis",
            [program, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.folder)],
        )
        self._wait(lambda: _redis_answers(port), "redis-server")
        var_dir = Path(os.environ["VERIDICT_VAR_DIR"])
        var_dir.mkdir(parents=True, exist_ok=True)
        self.environment = {
            **os.environ,
            "REDIS_URL": f"redis://127.0.0.1:{port}/0",
            "DJANGO_DEBUG": "false",
            "PYTHONUNBUFFERED": "1",
            **self.variables,
        }
        celery = [sys.executable, "-m", "celery", "-A", "veridict"]
        self._spawn("worker", [*celery, "worker", "--loglevel", "INFO"])
        self._spawn(
            "beat",
            [*celery, "beat", "--loglevel", "INFO", "--schedule", str(self.folder / "schedule")],
        )
        self._wait(lambda: "ready." in self.log("worker"), "the worker")
        self._wait(lambda: "beat: Starting..." in self.log("beat"), "beat")

    def _spawn(self, name: str, command: list[str]) -> None:
        with (self.folder / f"{name}.log").open("wb") as output:
            self.processes[name] = subprocess.Popen(
                command,
                cwd=settings.BASE_DIR,
                env=self.environment,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + START_SECONDS
        while not condition():
            if any(process.poll() is not None for process in self.processes.values()):
                raise RuntimeError(f"{what} did not start:\n{self._tails()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what} did not start in {START_SECONDS:.0f} s:\n{self._tails()}"
                )
            time.sleep(0.05)

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _tails(self) -> str:
        return "\n".join(f"--- {name}\n{self.log(name)[-2000:]}" for name in self.processes)

    def beat_ticks(self, task: str) -> list[float]:
        """When beat sent `task` (epoch seconds, from its log's local times)."""
        ticks = []
        for line in self.log("beat").splitlines():
            if f"Sending due task {task} " not in line or not line.startswith("["):
                continue
            stamp = line[1:24]  # "2026-11-26 15:01:23,384"
            ticks.append(
                time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1e3
            )
        return ticks

    def __exit__(self, *exc_info: object) -> None:
        # Beat first, so that no task is sent to a worker that is going away; Redis last.
        for name in ("beat", "worker", "redis"):
            process = self.processes.get(name)
            if process is None or process.poll() is not None:
                continue
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=20)
        shutil.rmtree(self.folder, ignore_errors=True)


# --- A steady stream of entries ------------------------------------------------------------------


@dataclass
class Appended:
    seq: int
    received_at: float  # epoch seconds, as stored
    late: float  # seconds after its slot in the schedule that the append started


class Pacer:
    """Appends entries with entry_append (what POST /api/v1/decisions calls, without the web tier
    in front) on a fixed schedule: entry i at start + i / rate, from APPENDERS threads."""

    def __init__(self) -> None:
        self.appended: list[Appended] = []
        self.errors: list[BaseException] = []
        self._lock = threading.Lock()

    def run(self, *, rate: float, seconds: float) -> list[Appended]:
        """Blocks for `seconds`; returns what this run appended."""
        total = int(rate * seconds)
        start = time.monotonic() + 0.05
        counter = iter(range(total))
        taken = threading.Lock()
        ours: list[Appended] = []

        def append() -> None:
            try:
                while True:
                    with taken:
                        number = next(counter, None)
                    if number is None:
                        return
                    due = start + number / rate
                    pause = due - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                    late = max(0.0, time.monotonic() - due)
                    entry, _ = entry_append(
                        kind="decision",
                        envelope={
                            "system": "bench-latency",
                            "input_sha256": secrets.token_hex(32),
                            "output_sha256": secrets.token_hex(32),
                            "n": number,
                        },
                    )
                    with self._lock:
                        ours.append(Appended(entry.seq, entry.received_at.timestamp(), late))
            except BaseException as exc:  # reported by run(), which cannot see this stack
                self.errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=append, daemon=True) for _ in range(APPENDERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self.errors:
            raise RuntimeError(f"appending failed: {self.errors[0]!r}") from self.errors[0]
        self.appended += ours
        return ours


class Observer(threading.Thread):
    """Notes when each batch and its built-in stamp first become visible to a reader."""

    def __init__(self, after_batch: int) -> None:
        super().__init__(name="observer", daemon=True)
        self.after_batch = after_batch
        self.sealed: dict[int, float] = {}  # batch number -> seen at
        self.last_seq: dict[int, int] = {}
        self.stamped: dict[int, float] = {}
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.look()
                time.sleep(POLL_SECONDS)
            self.look()
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()

    def look(self) -> None:
        newest = max(self.sealed, default=self.after_batch)
        for number, last_seq in Batch.objects.filter(number__gt=newest).values_list(
            "number", "last_seq"
        ):
            self.sealed[number] = time.time()
            self.last_seq[number] = last_seq
        unstamped = [number for number in self.sealed if number not in self.stamped]
        if unstamped:
            for number in Anchor.objects.filter(
                backend="builtin", batch__number__in=unstamped
            ).values_list("batch__number", flat=True):
                self.stamped[number] = time.time()

    def latencies(self, appended: list[Appended]) -> tuple[list[float], list[float]]:
        """Per entry, seconds from its received_at until its batch, then the stamp, was seen."""
        numbers = sorted(self.sealed)
        last_seqs = [self.last_seq[number] for number in numbers]
        sealed, stamped = [], []
        for entry in appended:
            number = numbers[bisect.bisect_left(last_seqs, entry.seq)]
            sealed.append(self.sealed[number] - entry.received_at)
            stamped.append(self.stamped[number] - entry.received_at)
        return sealed, stamped


def waits_for_beat(appended: list[Appended], ticks: list[float]) -> list[float]:
    """Per entry, seconds until beat next sent batch_seal: what a seal that cost nothing would
    still have to wait under the same schedule (the ceiling)."""
    waits = []
    for entry in appended:
        position = bisect.bisect_right(ticks, entry.received_at)
        if position < len(ticks):
            waits.append(ticks[position] - entry.received_at)
    return waits


def drained(observer: Observer, appended: list[Appended]) -> bool:
    newest_seq = max(entry.seq for entry in appended)
    return any(seq >= newest_seq for seq in observer.last_seq.values()) and all(
        number in observer.stamped for number in observer.sealed
    )


def wait_drained(observer: Observer, appended: list[Appended]) -> None:
    deadline = time.monotonic() + DRAIN_SECONDS
    while not drained(observer, appended):
        if observer.error is not None:
            raise RuntimeError("the observer failed") from observer.error
        if time.monotonic() > deadline:
            raise RuntimeError(f"entries still unsealed or unstamped {DRAIN_SECONDS:.0f} s later")
        time.sleep(POLL_SECONDS)


def log_revert_with_jobs(mark: bench.LogMark) -> None:
    """log_revert, and first the anchor jobs of the batches it removes (bookkeeping rows that
    would point at batches no longer there)."""
    AnchorJob.objects.filter(batch__number__gt=mark.batch_number).delete()
    log_revert(mark)


# --- The benchmark -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Repetition:
    entries: int
    seconds: float
    batches: int
    sealed_p50: float
    sealed_p99: float
    stamped_p50: float
    stamped_p99: float
    ceiling_p50: float
    ceiling_p99: float
    late_p99: float


def _repetition(number: int) -> Repetition:
    mark = log_mark()
    observer = Observer(after_batch=mark.batch_number)
    try:
        with CeleryStack() as stack:
            observer.start()
            clock = time.monotonic()
            appended = Pacer().run(rate=RATE, seconds=SECONDS)
            seconds = time.monotonic() - clock
            wait_drained(observer, appended)
            observer.stop.set()
            observer.join(timeout=10)
            ticks = stack.beat_ticks("batch-seal")
        if observer.error is not None:
            raise RuntimeError("the observer failed") from observer.error
        stored = Entry.objects.filter(seq__gt=mark.last_seq).count()
        if stored != len(appended):
            raise RuntimeError(f"{len(appended)} entries appended, {stored} stored")
    finally:
        observer.stop.set()
        log_revert_with_jobs(mark)
    sealed, stamped = observer.latencies(appended)
    ceiling = waits_for_beat(appended, ticks)
    late = [entry.late for entry in appended]
    result = Repetition(
        entries=len(appended),
        seconds=seconds,
        batches=len(observer.sealed),
        sealed_p50=percentile(sealed, 0.50),
        sealed_p99=percentile(sealed, 0.99),
        stamped_p50=percentile(stamped, 0.50),
        stamped_p99=percentile(stamped, 0.99),
        ceiling_p50=percentile(ceiling, 0.50),
        ceiling_p99=percentile(ceiling, 0.99),
        late_p99=percentile(late, 0.99),
    )
    say(
        f"  rep {number}: {result.entries:,} entries in {result.seconds:.1f} s "
        f"({result.entries / result.seconds:.0f}/s, p99 {result.late_p99 * 1e3:.0f} ms behind "
        f"schedule), {result.batches} batches; sealed p50 {result.sealed_p50:.2f} s "
        f"p99 {result.sealed_p99:.2f} s; stamped p50 {result.stamped_p50:.2f} s "
        f"p99 {result.stamped_p99:.2f} s; beat's own wait p50 {result.ceiling_p50:.2f} s "
        f"p99 {result.ceiling_p99:.2f} s"
    )
    return result


def run() -> list[Figure]:
    say(
        f"\n== latency: entry_append at {RATE:.0f}/s for {SECONDS:.0f} s, {REPETITIONS} "
        f"repetitions; a Celery worker and beat on a Redis of their own, default settings "
        f"(seal every {settings.SEAL_INTERVAL_SECONDS:g} s, at most "
        f"{settings.SEAL_MAX_ENTRIES:,} entries a seal) on a log of "
        f"{selectors.tree_size_current():,} entries"
    )
    repetitions = [_repetition(number) for number in range(1, REPETITIONS + 1)]

    def figure(name: str, attribute: str, quantile: str, *, target: bool) -> Figure:
        value = median([getattr(rep, f"{attribute}_{quantile}") for rep in repetitions])
        ceiling = median([getattr(rep, f"ceiling_{quantile}") for rep in repetitions])
        return Figure(
            f"latency: ingest -> {name} {quantile}",
            value * 1e3,
            "ms",
            ceiling * 1e3,
            ceiling / value,
            f"< {TARGET_P99_SECONDS:.0f} s" if target else "-",
            value < TARGET_P99_SECONDS if target else None,
        )

    return [
        figure("sealed", "sealed", "p50", target=False),
        figure("sealed", "sealed", "p99", target=True),
        figure("stamped", "stamped", "p50", target=False),
        figure("stamped", "stamped", "p99", target=True),
    ]
