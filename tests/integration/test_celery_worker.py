"""A real Celery worker and beat on Redis and PostgreSQL seal and anchor the log on schedule, and
nothing acknowledged is lost when the worker is killed, Redis stops or an anchor backend is down."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.db import connection, transaction
from veridict_verify.receipt import receipt_verify

from tests.audit import conftest as audit_fixtures
from tests.integration.celery_helpers import (
    CeleryProcess,
    RedisServer,
    celery_environment,
    everything_sealed,
    everything_stamped,
    ledger_assert_sealed_exactly_once,
    manage_run,
    wait_for,
)
from tests.integration.test_anchor_loopback import Peer
from timestamping import keys, selectors
from timestamping.models import Anchor, AnchorJob, Batch, Entry
from timestamping.services import entry_append

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

VERIFY = Path(sys.executable).with_name("veridict-verify")
# The AI-system fixtures of tests/audit/conftest.py, for the tests here that post decisions.
ai_system = audit_fixtures.ai_system
api_client = audit_fixtures.api_client
decision_request = audit_fixtures.decision_request


@dataclass
class Stack:
    """The production processes but the web: a Redis, workers ("machines") and one beat."""

    redis: RedisServer
    workers: list[CeleryProcess]
    beat: CeleryProcess
    environment: dict[str, str]

    @property
    def worker(self) -> CeleryProcess:
        return self.workers[0]


@pytest.fixture
def celery_stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    """Starts Redis, workers and beat on the test database with these VERIDICT_* settings;
    stops them all afterwards (and shows their logs when the test failed)."""
    stacks: list[Stack] = []

    def start(*, workers: int = 1, **variables: str) -> Stack:
        redis = RedisServer(tmp_path / "redis")
        redis.start()
        environment = celery_environment(redis_url=redis.url, var_dir=tmp_path / "var", **variables)
        names = [f"worker-{chr(ord('a') + n)}" for n in range(workers)]
        stack = Stack(
            redis=redis,
            workers=[
                CeleryProcess(
                    "worker",
                    # Its database sessions carry its name, so a test can tell whose they are.
                    environment={
                        **environment,
                        "DATABASE_URL": f"{environment['DATABASE_URL']}?application_name={name}",
                    },
                    log=tmp_path / f"{name}.log",
                    name=name,
                )
                for name in names
            ],
            beat=CeleryProcess(
                "beat", environment=environment, log=tmp_path / "beat.log", name="beat"
            ),
            environment=environment,
        )
        stacks.append(stack)
        stack.beat.start(wait=False)
        for worker in stack.workers:
            worker.start(wait=False)
        for worker in stack.workers:
            worker.wait_ready()
        stack.beat.wait_ready()
        return stack

    try:
        yield start
    finally:
        for stack in stacks:
            for worker in stack.workers:
                worker.stop()
            stack.beat.stop()
            stack.redis.stop()
            # Captured output: pytest shows it only for a failed test.
            for worker in stack.workers:
                print(f"--- {worker.name} log ---\n{worker.log_tail(6000)}")
            print(f"--- beat log ---\n{stack.beat.log_tail(2000)}")


def append(count: int, *, kind: str = "test", per_transaction: int = 100) -> list[Entry]:
    """Appends count entries, per_transaction at a time: each group is acknowledged once its
    transaction commits (as a bulk request's records are)."""
    entries: list[Entry] = []
    while len(entries) < count:
        with transaction.atomic():
            entries += [
                entry_append(kind=kind, envelope={"n": len(entries) + n})[0]
                for n in range(min(per_transaction, count - len(entries)))
            ]
    return entries


def verify_cli(entry: Entry, tmp_path: Path, *tsa_cas: Path) -> dict[str, Any]:
    """`veridict-verify --json` (the console script) on the entry's receipt, keys pinned."""
    path = tmp_path / f"receipt-{entry.uuid}.json"
    path.write_text(json.dumps(selectors.receipt_get(entry=entry)))
    pins = [arg for ca in tsa_cas for arg in ("--tsa-ca", str(ca))]
    result = subprocess.run(
        [str(VERIFY), str(path), "--key", str(keys.verifier_key()), *pins, "--json"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode in (0, 1, 3), result.stderr
    report = json.loads(result.stdout)
    report["exit"] = result.returncode
    return report


def step_statuses(report: dict[str, Any]) -> dict[str, str]:
    return {step["name"]: step["status"] for step in report["steps"]}


# --- sealed on schedule ---------------------------------------------------------------------

MMD = 20
SEAL_MAX = 100
BACKLOG = 1_500


def test_entries_are_sealed_within_the_mmd_and_stamped_and_their_receipts_verify(
    transactional_db, tmp_path, settings, celery_stack, ledger_keys
):
    # The SETs promise MMD seconds; beat seals every 5 s (the default). The backlog is fifteen
    # times SEAL_MAX_ENTRIES: sealed one batch per beat, its last entries would wait 75 s.
    settings.MMD_SECONDS = MMD
    stack = celery_stack(VERIDICT_MMD_SECONDS=str(MMD), VERIDICT_SEAL_MAX_ENTRIES=str(SEAL_MAX))
    backlog = append(BACKLOG, per_transaction=BACKLOG)  # one burst, as one bulk request
    trickle = []
    for _ in range(6):
        trickle += append(1, kind="trickle")
        time.sleep(0.5)
    acknowledged = backlog + trickle

    waited = wait_for(
        lambda: everything_sealed() and everything_stamped(),
        MMD + 10,
        "every entry to be sealed and stamped",
    )
    batches = ledger_assert_sealed_exactly_once(
        acknowledged={str(entry.uuid) for entry in acknowledged}, max_entries=SEAL_MAX
    )
    assert len(batches) >= BACKLOG // SEAL_MAX
    assert Anchor.objects.filter(backend="builtin").count() == len(batches)
    for entry in acknowledged:
        batch = selectors.batch_of_entry(entry=entry)
        assert (batch.sealed_at - entry.received_at).total_seconds() <= MMD, (entry, batch)
    assert "mmd_exceeded" not in stack.worker.log_text()

    # The first entry of a batch waited longest; the console script checks every step, the
    # seal within the SET's promise included.
    first_of = {
        batch.number: Entry.objects.filter(seq__gte=batch.first_seq).order_by("seq").first()
        for batch in batches
    }
    sample = [first_of[1], first_of[len(batches) // 2], first_of[len(batches)], trickle[-1]]
    for entry in sample:
        report = verify_cli(entry, tmp_path, ledger_keys["TSA_CA_CERT_FILE"])
        assert (report["exit"], report["verdict"]) == (0, "verified"), report
        assert step_statuses(report)["anchor[0]"] == "ok", report
    print(f"{BACKLOG + len(trickle)} entries in {len(batches)} batches, all sealed {waited:.1f} s")


# --- kill -9 --------------------------------------------------------------------------------

KILLS = 6
BACKLOG_AT_START = 1_000
KILL_SEAL_MAX = 20
KILL_TEST_SECONDS = 85
VERIFY_LEDGER_SECONDS = 15


class Ingestion(threading.Thread):
    """Appends entries on its own connection, 20 a transaction, until told to stop: entries
    acknowledged while workers die and come back."""

    def __init__(self) -> None:
        super().__init__(name="ingestion", daemon=True)
        self.acknowledged: list[str] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                self.acknowledged += [str(entry.uuid) for entry in append(20, kind="live")]
                time.sleep(0.05)
        except BaseException as exc:  # reported by the test, which cannot see this thread's stack
            self.error = exc
        finally:
            connection.close()


def worker_in_transaction(workers: list[CeleryProcess], *, seconds: float) -> str | None:
    """The name of a worker whose database session is inside a transaction (a seal, or the
    stamp after it), as soon as there is one; None if none was within `seconds`."""
    names = [worker.name for worker in workers]
    deadline = time.monotonic() + seconds
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = ANY(%s) "
                "AND xact_start IS NOT NULL LIMIT 1",
                [names],
            )
            row = cursor.fetchone()
            if row is not None:
                return row[0]
    return None


def test_workers_killed_mid_seal_again_and_again_leave_no_fork_no_gap_and_no_double_seal(
    transactional_db, tmp_path, celery_stack
):
    started = time.monotonic()
    deadline = started + KILL_TEST_SECONDS - VERIFY_LEDGER_SECONDS
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    # Two workers, as on two machines: a kill may come while the other one waits for the seal
    # lock the victim holds.
    stack = celery_stack(
        workers=2,
        VERIDICT_SEAL_INTERVAL="0.5",
        VERIDICT_SEAL_MAX_ENTRIES=str(KILL_SEAL_MAX),
        VERIDICT_ANCHOR_SWEEP_INTERVAL="2",
    )
    backlog = [str(entry.uuid) for entry in append(BACKLOG_AT_START)]
    ingestion = Ingestion()
    ingestion.start()
    by_name = {worker.name: worker for worker in stack.workers}
    kills = []
    try:
        for round_number in range(KILLS):
            restarted = [worker for worker in stack.workers if not worker.running]
            for worker in restarted:
                worker.start(wait=False)
            for worker in restarted:
                worker.wait_ready()
            # A random moment, then the next one at which a worker is inside a transaction:
            # between seals a kill would only test a restart.
            time.sleep(rng.uniform(0.0, 1.0))
            name = worker_in_transaction(stack.workers, seconds=5)
            assert name is not None, f"no worker sealed for 5 s (round {round_number})"
            victim = by_name[name]
            if round_number % 2:
                # Only the pool process that runs the task: the main process sees it die and,
                # with reject_on_worker_lost, puts the message back for a new pool process.
                (pool,) = victim.pool_pids()
                os.kill(pool, signal.SIGKILL)
                kills.append((name, "pool process", Batch.objects.count()))
            else:
                # The whole worker at once, as a power cut would: its message stays unacked.
                victim.kill()
                kills.append((name, "worker", Batch.objects.count()))
            assert time.monotonic() < deadline, "the kills took too long"
    finally:
        ingestion.stop.set()
        ingestion.join(timeout=10)
    assert ingestion.error is None, repr(ingestion.error)
    assert ingestion.acknowledged, "nothing was appended while the workers were killed"

    for worker in stack.workers:
        if not worker.running:
            worker.start()
    wait_for(
        lambda: everything_sealed() and everything_stamped(),
        deadline - time.monotonic(),
        "the restarted workers to seal and stamp everything",
    )
    batches = ledger_assert_sealed_exactly_once(
        acknowledged=set(backlog + ingestion.acknowledged), max_entries=KILL_SEAL_MAX
    )
    # Each batch stamped once: a stamp lost with a killed worker is made by the sweep, not twice.
    assert Anchor.objects.filter(backend="builtin").count() == len(batches)
    summary = manage_run(
        "verify_ledger",
        "--no-progress",
        environment=stack.environment,
        seconds=VERIFY_LEDGER_SECONDS,
    )
    assert summary.startswith("ledger verified"), summary
    sealed_by = {worker.name: worker.log_text().count("batch_sealed") for worker in stack.workers}
    print(
        f"seed {seed}: kills (worker in a transaction, what was killed, batches) {kills}; "
        f"{len(backlog) + len(ingestion.acknowledged)} entries in {len(batches)} batches, "
        f"seals logged per worker {sealed_by}; {summary.strip()}; "
        f"{time.monotonic() - started:.1f} s"
    )


# --- Redis down -----------------------------------------------------------------------------


def post_decision(client: Any, body: dict[str, Any]) -> Any:
    return client.post("/api/v1/decisions", json.dumps(body), content_type="application/json")


def test_ingestion_answers_201_while_redis_is_down_and_sealing_catches_up_once_it_is_back(
    transactional_db,
    celery_stack,
    api_client,
    decision_request,
    tsa_ca_pem,
):
    stack = celery_stack(VERIDICT_SEAL_INTERVAL="1")
    first = post_decision(api_client, decision_request(client_decision_id="before"))
    assert first.status_code == 201, first.content
    wait_for(everything_sealed, 20, "the first decision to be sealed")

    stack.redis.stop()
    # A seal that started before the stop finishes; later ones cannot be asked for.
    time.sleep(1.5)
    size_when_down = selectors.tree_size_current()
    answers = []
    clock = time.monotonic()
    for n in range(10):
        answers.append(
            post_decision(api_client, decision_request(client_decision_id=f"while-down-{n}"))
        )
    (direct, _) = entry_append(kind="test", envelope={"while": "redis is down"})
    posting_seconds = time.monotonic() - clock
    assert [answer.status_code for answer in answers] == [201] * 10, answers[-1].content
    # A request path that published to the broker would have failed or waited on its retries.
    assert posting_seconds < 10, posting_seconds
    time.sleep(3)  # three beat intervals
    assert selectors.tree_size_current() == size_when_down, "sealed although Redis was down"

    stack.redis.start()  # the same port, empty: every message it held is gone
    waited = wait_for(
        lambda: everything_sealed() and everything_stamped(),
        45,
        "sealing to catch up once Redis is back",
    )
    assert stack.worker.running and stack.worker.starts == 1, "the worker did not reconnect"
    assert stack.beat.running and stack.beat.starts == 1, "beat did not reconnect"
    ids = [answer.json()["id"] for answer in answers]
    entries = list(Entry.objects.filter(uuid__in=ids)) + [direct]
    assert len(entries) == 11
    ledger_assert_sealed_exactly_once(
        acknowledged={str(entry.uuid) for entry in entries}, max_entries=100_000
    )
    for entry in (entries[0], direct):
        report = receipt_verify(
            selectors.receipt_get(entry=entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
        )
        assert report.ok, report.steps
    print(f"10 decisions posted in {posting_seconds:.2f} s with Redis down; sealed {waited:.1f} s")


def test_ingestion_answers_201_while_redis_is_down_with_the_throttle_cache_on_it_too(
    transactional_db,
    tmp_path,
    settings,
    api_client,
    decision_request,
):
    # Production's REDIS_URL makes Redis the broker and the throttle's cache alike.
    server = RedisServer(tmp_path / "redis")
    server.start()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": server.url,
        }
    }
    try:
        before = post_decision(api_client, decision_request(client_decision_id="before"))
        assert before.status_code == 201, before.content
        server.stop()
        during = post_decision(api_client, decision_request(client_decision_id="while-down"))
    finally:
        server.stop()
    assert during.status_code == 201, during.content


# --- an anchor backend down -----------------------------------------------------------------


def test_sealing_goes_on_while_an_anchor_backend_is_down_and_its_anchor_succeeds_once_it_is_back(
    transactional_db, tmp_path, settings, celery_stack, ledger_keys
):
    # Configured, but not started: nothing listens on its loopback port.
    peer = Peer(tmp_path / "peer")
    backends = [
        {
            "name": "peer",
            "type": "rfc3161",
            "url": peer.url,
            "interval": 3,
            "roots": [str(peer.ca)],
            "timeout": 2,
        }
    ]
    settings.ANCHOR_BACKENDS = backends
    celery_stack(
        VERIDICT_ANCHORS=json.dumps(backends),
        VERIDICT_SEAL_INTERVAL="1",
        VERIDICT_ANCHOR_DUE_INTERVAL="1",
        VERIDICT_ANCHOR_SWEEP_INTERVAL="1",
        VERIDICT_ANCHOR_RETRY_BASE="1",
        VERIDICT_ANCHOR_RETRY_MAX="2",
    )
    try:
        (early,) = append(1)

        def retried_and_failing() -> bool:
            job = AnchorJob.objects.filter(backend="peer").first()
            return job is not None and job.status == "failed" and job.failures >= 2

        wait_for(retried_and_failing, 30, "the peer's anchor job to fail and be retried")
        (job,) = AnchorJob.objects.filter(backend="peer")
        assert "did not answer" in job.last_error and peer.url in job.last_error, job.last_error

        # Sealing and the built-in stamps go on meanwhile.
        down_entries = []
        for _ in range(3):
            down_entries += append(5)
            before = Batch.objects.count()
            wait_for(lambda: Batch.objects.count() > before, 20, "a seal")  # noqa: B023
        wait_for(everything_stamped, 20, "the built-in stamps")
        last_sealed_while_down = Batch.objects.order_by("-number").first().number
        assert last_sealed_while_down >= 4
        assert not Anchor.objects.filter(backend="peer").exists()
        assert AnchorJob.objects.filter(backend="peer").count() == 1, "one open job at a time"

        peer.start()
        wait_for(
            lambda: AnchorJob.objects.get(pk=job.pk).status == "final",
            30,
            "the failed job to be retried and succeed",
        )
        # Back to its interval: a later job anchors the batches sealed during the outage.
        wait_for(
            lambda: Anchor.objects.filter(
                backend="peer", batch__number__gte=last_sealed_while_down
            ).exists(),
            30,
            "the peer to anchor a checkpoint sealed during its outage",
        )
    finally:
        peer.stop()
    job.refresh_from_db()
    assert job.failures >= 2 and job.attempts > job.failures and job.last_error == ""
    builtin_ca = ledger_keys["TSA_CA_CERT_FILE"]
    for entry in (early, down_entries[-1]):
        report = verify_cli(entry, tmp_path, builtin_ca, peer.ca)
        assert (report["exit"], report["verdict"]) == (0, "verified"), report
        statuses = step_statuses(report)
        assert statuses["anchor[0]"] == statuses["anchor[1]"] == "ok", report
        anchors = selectors.receipt_get(entry=entry)["anchors"]
        assert [anchor["tsa"] for anchor in anchors] == ["builtin", peer.url]
    print(
        f"peer job: {job.attempts} attempts, {job.failures} failures; "
        f"{last_sealed_while_down} batches sealed while the peer was down"
    )
