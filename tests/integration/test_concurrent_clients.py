"""16 clients posting decisions at once to a real server, with retries, cut-off connections and
duplicate requests, lose nothing and duplicate nothing."""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from audit import vault
from audit.models import Decision
from audit.services.subjects import decision_client_id
from audit.services.systems import ai_system_create, api_key_create
from tests.integration.test_concurrent_sealers import database_url
from timestamping.models import Entry

pytestmark = pytest.mark.postgres

CLIENTS = 16
SYSTEMS = 4  # clients i, i + 4, i + 8, i + 12 post as one system
OWN_REQUESTS = 10  # per client, each its own decision
TWIN_ROUNDS = 4  # per round, the four clients of a system post one request at the same moment
WORKERS = 3
# Everything below is bounded, so that a hung server fails the test rather than the CI job.
DEADLINE_SECONDS = 50
REQUEST_TIMEOUT = 15
MAX_ATTEMPTS = 8


@dataclass
class Plan:
    """One distinct request and how a client misbehaves while sending it."""

    system: int
    client_decision_id: str
    idempotency_key: str | None
    body: bytes
    # "twice": sent again after its answer; "close", "reset", "half": the first attempt is cut off
    # (closed right after sending, reset after sending, closed half way through the body);
    # "impatient": the first attempt gives up waiting for the answer almost at once.
    trick: str | None = None

    @property
    def identity(self) -> tuple[int, str]:
        """What the server deduplicates on: the idempotency key, else the client decision id."""
        return (self.system, self.idempotency_key or f"id:{self.client_decision_id}")


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


@dataclass
class Results:
    answers: dict[tuple[int, str], list[Answer]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    cut_offs: int = 0
    retries: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def decision_body(client_decision_id: str, rng: random.Random) -> bytes:
    return json.dumps(
        {
            "client_decision_id": client_decision_id,
            "model": {"name": "loan-scorer", "version": "4.2.0"},
            "occurred_at": "2026-11-26T10:15:00Z",
            "inputs": {"income": rng.randrange(10_000, 99_000), "amount": rng.randrange(1, 50_000)},
            "output": {"label": rng.choice(["approve", "deny"]), "score": rng.random()},
            "solely_automated": rng.random() < 0.5,
            # A few subjects, so that concurrent first decisions for one person race too.
            "subject_ref": f"applicant-{rng.randrange(5)}",
        }
    ).encode()


def request_bytes(plan: Plan, api_key: str, port: int) -> bytes:
    headers = [
        "POST /api/v1/decisions HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        f"Authorization: Api-Key {api_key}",
        "Content-Type: application/json",
        f"Content-Length: {len(plan.body)}",
    ]
    if plan.idempotency_key:
        headers.append(f"Idempotency-Key: {plan.idempotency_key}")
    return ("\r\n".join(headers) + "\r\n\r\n").encode() + plan.body


def cut_off(plan: Plan, api_key: str, port: int) -> None:
    """Sends the request on a raw socket and goes away without reading the answer."""
    raw = request_bytes(plan, api_key, port)
    with socket.create_connection(("127.0.0.1", port), timeout=REQUEST_TIMEOUT) as sock:
        if plan.trick == "half":
            sock.sendall(raw[: len(raw) - len(plan.body) // 2])
        else:
            sock.sendall(raw)
        if plan.trick == "reset":
            # SO_LINGER 0: close() sends RST, as a client that crashed would.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Client(threading.Thread):
    """Posts its own requests, then joins the twin rounds; retries until each is acknowledged."""

    def __init__(
        self,
        *,
        number: int,
        port: int,
        api_key: str,
        own: list[Plan],
        twins: list[Plan],
        barriers: list[threading.Barrier],
        results: Results,
        deadline: float,
    ) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.port = port
        self.api_key = api_key
        self.own = own
        self.twins = twins
        self.barriers = barriers
        self.results = results
        self.deadline = deadline
        self.connection: http.client.HTTPConnection | None = None

    def run(self) -> None:
        try:
            for plan in self.own:
                self.deliver(plan)
            for plan, barrier in zip(self.twins, self.barriers, strict=True):
                barrier.wait(timeout=max(1.0, self.deadline - time.monotonic()))
                self.deliver(plan)
        except BaseException as exc:  # reported by the test, which cannot see this thread's stack
            self.results.errors.append(exc)
            for barrier in self.barriers:
                barrier.abort()
        finally:
            if self.connection is not None:
                self.connection.close()

    def deliver(self, plan: Plan) -> None:
        if plan.trick in ("close", "reset", "half"):
            cut_off(plan, self.api_key, self.port)
            with self.results.lock:
                self.results.cut_offs += 1
        answer = self.post_until_acknowledged(plan)
        self.record(plan, answer)
        if plan.trick == "twice":
            self.record(plan, self.post_until_acknowledged(plan))

    def post_until_acknowledged(self, plan: Plan) -> Answer:
        headers = {"Authorization": f"Api-Key {self.api_key}", "Content-Type": "application/json"}
        if plan.idempotency_key:
            headers["Idempotency-Key"] = plan.idempotency_key
        for attempt in range(MAX_ATTEMPTS):
            if time.monotonic() > self.deadline:
                raise TimeoutError(f"{plan.identity} not acknowledged before the deadline")
            if attempt:
                with self.results.lock:
                    self.results.retries += 1
                time.sleep(0.05 * 2**attempt)
            try:
                impatient = plan.trick == "impatient" and attempt == 0
                if self.connection is None or impatient:
                    if self.connection is not None:
                        self.connection.close()
                    self.connection = http.client.HTTPConnection(
                        "127.0.0.1", self.port, timeout=0.005 if impatient else REQUEST_TIMEOUT
                    )
                self.connection.request("POST", "/api/v1/decisions", plan.body, headers)
                response = self.connection.getresponse()
                status, content = response.status, response.read()
            except (OSError, http.client.HTTPException):
                # What a real client does on a dropped connection: reconnect and send it again.
                if self.connection is not None:
                    self.connection.close()
                self.connection = None
                continue
            if status in (200, 201):
                return Answer(status, json.loads(content))
            with self.results.lock:
                self.results.unexpected.append(f"{plan.identity}: {status} {content[:300]!r}")
            if status < 500:
                raise AssertionError(f"{plan.identity} answered {status}: {content[:300]!r}")
        raise AssertionError(f"{plan.identity} not acknowledged after {MAX_ATTEMPTS} attempts")

    def record(self, plan: Plan, answer: Answer) -> None:
        with self.results.lock:
            self.results.answers[plan.identity].append(answer)


def plans_make(rng: random.Random) -> tuple[list[list[Plan]], list[list[Plan]]]:
    """Per client: its own requests, and its share of the twin rounds."""
    tricks = [None] * 4 + ["twice", "close", "reset", "half", "impatient"]
    own: list[list[Plan]] = []
    for client in range(CLIENTS):
        plans = []
        for n in range(OWN_REQUESTS):
            client_decision_id = f"c{client}-{n}"
            # Every fifth without an idempotency key: deduplicated by its client decision id.
            key = None if n % 5 == 4 else f"key-{client}-{n}"
            plans.append(
                Plan(
                    system=client % SYSTEMS,
                    client_decision_id=client_decision_id,
                    idempotency_key=key,
                    body=decision_body(client_decision_id, rng),
                    trick=rng.choice(tricks),
                )
            )
        own.append(plans)
    twins: list[list[Plan]] = [[] for _ in range(CLIENTS)]
    for round_number in range(TWIN_ROUNDS):
        for system in range(SYSTEMS):
            client_decision_id = f"twin-{round_number}-{system}"
            # The same key in every system: keys are unique per system, not across systems.
            plan = Plan(
                system=system,
                client_decision_id=client_decision_id,
                idempotency_key=f"twin-{round_number}",
                body=decision_body(client_decision_id, rng),
            )
            for client in range(system, CLIENTS, SYSTEMS):
                twins[client].append(plan)
    return own, twins


def server_start(log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """gunicorn on a free loopback port, against the test database; (process, port)."""
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_DEBUG": "false",
        "DJANGO_SECURE_SSL_REDIRECT": "false",
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("wb") as output:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "veridict.wsgi:application",
                "--bind",
                "127.0.0.1:0",  # the kernel picks a free port; the log says which
                "--workers",
                str(WORKERS),
                "--timeout",
                "30",
                "--log-level",
                "info",
            ],
            cwd=settings.BASE_DIR,
            env=environment,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    port = None
    while port is None:
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
        if found:
            port = int(found.group(1))
        elif server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"gunicorn did not start: {log.read_text()[-3000:]}")
        else:
            time.sleep(0.05)
    while True:  # until a worker answers
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/v1/log/keys")
            if connection.getresponse().status == 200:
                connection.close()
                return server, port
        except OSError:
            pass
        if server.poll() is not None or time.monotonic() > deadline:
            server.kill()
            pytest.fail(f"gunicorn does not answer: {log.read_text()[-3000:]}")
        time.sleep(0.1)


# `transactional_db` by name: the server's workers must see the committed system and keys, and
# tests/conftest.py lifts the append-only triggers for the flush that follows.
def test_sixteen_clients_with_retries_and_cut_offs_lose_and_duplicate_nothing(
    transactional_db, tmp_path
):
    started = time.monotonic()
    rng = random.Random(20261126)
    systems = [ai_system_create(slug=f"concurrent-{n}", name=f"Concurrent {n}") for n in range(4)]
    api_keys = [api_key_create(system=system, name="clients") for system in systems]
    own, twins = plans_make(rng)
    log = tmp_path / "gunicorn.log"
    server, port = server_start(log)
    results = Results()
    deadline = time.monotonic() + DEADLINE_SECONDS
    barriers = [threading.Barrier(CLIENTS) for _ in range(TWIN_ROUNDS)]
    clients = [
        Client(
            number=n,
            port=port,
            api_key=api_keys[n % SYSTEMS],
            own=own[n],
            twins=twins[n],
            barriers=barriers,
            results=results,
            deadline=deadline,
        )
        for n in range(CLIENTS)
    ]
    clock = time.monotonic()
    try:
        for client in clients:
            client.start()
        for client in clients:
            client.join(timeout=max(0.1, deadline - time.monotonic()))
        assert not any(client.is_alive() for client in clients), "a client hung"
        posting = time.monotonic() - clock
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
    server_log = log.read_text()
    assert not results.errors, f"{results.errors!r}\n{server_log[-3000:]}"
    assert not results.unexpected, f"{results.unexpected}\n{server_log[-3000:]}"
    assert "Traceback" not in server_log, server_log[-5000:]

    plans = {plan.identity: plan for plans in own + twins for plan in plans}
    assert set(results.answers) == set(plans), "a request was never acknowledged"
    by_identity: dict[tuple[int, str], Decision] = {}
    # Decisions keep only keyed hashes of their Idempotency-Key and client id: each plan's
    # identity is found by the hash its request was stored under.
    identities: dict[tuple[int, bytes], tuple[int, str]] = {}
    for identity, plan in plans.items():
        system_id = systems[plan.system].pk
        lookup = (
            vault.idempotency_lookup(system_id=system_id, key=plan.idempotency_key)
            if plan.idempotency_key
            else vault.client_id_lookup(
                system_id=system_id, client_decision_id=plan.client_decision_id
            )
        )
        identities[(system_id, lookup)] = identity
    for decision in Decision.objects.select_related("entry", "subject"):
        lookup = decision.idempotency_lookup or decision.client_id_lookup
        identity = identities[(decision.system_id, bytes(lookup))]
        assert identity not in by_identity, f"two decisions for {identity}"
        by_identity[identity] = decision
    # Nothing lost: every acknowledged request is one stored decision, under the id it was given.
    for identity, answers in results.answers.items():
        decision = by_identity.get(identity)
        assert decision is not None, f"{identity} was acknowledged but is not stored"
        assert {answer.body["id"] for answer in answers} == {str(decision.entry.uuid)}, identity
        assert all(answer.body == answers[0].body for answer in answers), identity
        assert decision_client_id(decision) == plans[identity].client_decision_id
        created = sum(answer.status == 201 for answer in answers)
        # A cut-off first attempt may have been the one that created it, unseen.
        unseen = plans[identity].trick in ("close", "reset", "impatient")
        assert created == 1 or (created == 0 and unseen), (
            identity,
            [answer.status for answer in answers],
        )
    # Nothing duplicated: as many decisions, and decision entries, as distinct requests.
    assert len(by_identity) == len(plans)
    assert Entry.objects.filter(kind="decision").count() == len(plans)
    assert Counter(Entry.objects.values_list("kind", flat=True)) == {
        "decision": len(plans),
        "model_version": SYSTEMS,
    }
    twin_answers = [results.answers[plan.identity] for plan in twins[0]]
    assert all(len(answers) == CLIENTS // SYSTEMS for answers in twin_answers)
    elapsed = time.monotonic() - started
    print(  # shown with -s
        f"{len(plans)} distinct requests, {sum(map(len, results.answers.values()))} answers, "
        f"{results.cut_offs} cut off, {results.retries} retries; "
        f"posting {posting:.1f} s, {elapsed:.1f} s in all"
    )
    assert elapsed < 60
