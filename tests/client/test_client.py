"""veridict-client against a real server (pytest-django's live_server), through a flaky proxy."""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import pytest
from veridict_client import ApiError, TransportError, VeridictClient
from veridict_verify.receipt import receipt_verify

from audit import vault
from audit.models import AISystem, Decision, Document, Outcome
from audit.services.systems import api_key_create
from timestamping import keys
from timestamping.services import batch_seal

pytestmark = pytest.mark.django_db(transaction=True)

# What the proxy does with a request: forward it, forward it and lose the answer, or answer
# itself without forwarding.
FORWARD = "forward"
LOSE_ANSWER = "lose the answer"


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class FlakyProxy:
    """A stand-in for a network in the way: one HTTP request per connection, each handled as
    the next planned step says (then FORWARD)."""

    upstream: tuple[str, int]
    plan: list[str | bytes] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)
    url: str = ""

    def step(self) -> str | bytes:
        return self.plan.pop(0) if self.plan else FORWARD


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        block = connection.recv(65536)
        if not block:
            return b""
        data += block
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        block = connection.recv(65536)
        if not block:
            break
        body += block
    return head + b"\r\n\r\n" + body


def _closing(message: bytes) -> bytes:
    """The message with `Connection: close`: the proxy serves one request per connection."""
    head, _, body = message.partition(b"\r\n\r\n")
    lines = [line for line in head.split(b"\r\n") if not line.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n" + body


def _forward(upstream: tuple[str, int], request: bytes) -> bytes:
    with socket.create_connection(upstream, timeout=30) as server:
        server.sendall(_closing(request))
        answer = b""
        while block := server.recv(65536):
            answer += block
    return _closing(answer)


@pytest.fixture
def proxy(live_server) -> Iterator[FlakyProxy]:
    address = urlsplit(live_server.url)
    flaky = FlakyProxy(upstream=(address.hostname, address.port))

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            request = _read_request(self.request)
            if not request:
                return
            start, *header_lines = request.partition(b"\r\n\r\n")[0].decode().split("\r\n")
            method, path, _ = start.split(" ", 2)
            headers = dict(line.split(": ", 1) for line in header_lines)
            flaky.seen.append(Seen(method, path, headers))
            step = flaky.step()
            if isinstance(step, bytes):
                self.request.sendall(step)
            elif step == LOSE_ANSWER:
                _forward(flaky.upstream, request)  # the server does the work; nobody hears
            else:
                self.request.sendall(_forward(flaky.upstream, request))

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    flaky.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield flaky
    server.shutdown()
    server.server_close()


def canned(status: int, reason: str, body: dict, **headers: str) -> bytes:
    payload = json.dumps(body).encode()
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    lines += [f"Content-Length: {len(payload)}", "Connection: close"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


BUSY = canned(503, "Service Unavailable", {"error": {"code": "busy", "message": "busy"}})
SLOW_DOWN = canned(
    429, "Too Many Requests", {"error": {"code": "throttled", "message": "wait"}}, Retry_After="7"
)


@pytest.fixture
def api_key() -> str:
    system = AISystem.objects.create(slug="loan-scorer", name="Loan scorer")
    return api_key_create(system=system, name="client test")


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def make_client(proxy, api_key, waits) -> Callable[..., VeridictClient]:
    def make(**options) -> VeridictClient:
        options.setdefault("retries", 3)
        return VeridictClient(proxy.url, api_key, timeout=30, sleep=waits.append, **options)

    return make


def decision(number: int = 1, **changes) -> dict:
    record = {
        "client_decision_id": f"loan-{number}",
        "model": {"name": "loan-scorer", "version": "4.2.0"},
        "occurred_at": "2026-11-26T10:15:00Z",
        "inputs_sha256": "ab" * 32,
        "output": {"label": "deny", "score": 0.31},
        "solely_automated": True,
        "subject_ref": f"applicant-{number}",
    }
    record.update(changes)
    return record


def test_a_decision_is_recorded_and_its_receipt_verifies(make_client, tmp_path, tsa_ca_pem):
    with make_client() as client:
        answer = client.decision_record(decision())
        assert Decision.objects.get().entry.uuid.hex == answer["id"].replace("-", "")
        batch_seal()
        receipt = client.receipt_get(answer["id"])
        assert receipt_verify(receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem).ok
        path = client.receipt_download(answer["id"], tmp_path / "receipt.json")
    assert json.loads(path.read_text()) == receipt
    assert [p.name for p in tmp_path.iterdir()] == ["receipt.json"]


def test_a_retry_after_a_lost_answer_makes_exactly_one_decision(make_client, proxy, waits):
    proxy.plan = [LOSE_ANSWER, BUSY]
    answer = make_client().decision_record(decision())
    assert Decision.objects.count() == 1
    assert Decision.objects.get().entry.uuid.hex == answer["id"].replace("-", "")
    keys_sent = [seen.headers["Idempotency-Key"] for seen in proxy.seen]
    assert len(keys_sent) == 3 and len(set(keys_sent)) == 1
    assert len(waits) == 2 and all(wait > 0 for wait in waits)


def test_a_given_idempotency_key_is_the_one_sent(make_client, proxy):
    make_client().decision_record(decision(), idempotency_key="my-key-1")
    assert proxy.seen[0].headers["Idempotency-Key"] == "my-key-1"
    stored = Decision.objects.get()
    assert bytes(stored.idempotency_lookup) == vault.idempotency_lookup(
        system_id=stored.system_id, key="my-key-1"
    )


def test_a_429_waits_as_retry_after_says(make_client, proxy, waits):
    proxy.plan = [SLOW_DOWN]
    make_client().decision_record(decision())
    assert waits == [7.0]
    assert Decision.objects.count() == 1


def test_backoff_grows_and_retries_end_in_an_error(make_client, proxy, waits):
    proxy.plan = [BUSY] * 4
    with pytest.raises(ApiError) as raised:
        make_client(retries=3, backoff=1.0).decision_record(decision())
    assert raised.value.status == 503
    assert len(proxy.seen) == 4
    assert [1.0 / 2 <= waits[0] <= 1.0, 1.0 <= waits[1] <= 2.0, 2.0 <= waits[2] <= 4.0] == [
        True
    ] * 3


def test_a_4xx_is_never_retried(make_client, proxy, waits):
    with pytest.raises(ApiError) as raised:
        make_client().decision_record(decision(colour="blue"))
    assert raised.value.status == 400
    assert "colour" in raised.value.fields
    assert len(proxy.seen) == 1 and waits == []


def test_no_server_is_a_transport_error_after_the_retries(api_key, waits):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = VeridictClient(f"http://127.0.0.1:{port}", api_key, retries=2, sleep=waits.append)
    with pytest.raises(TransportError):
        client.decision_record(decision())
    assert len(waits) == 2


def test_an_outcome_is_retried_while_no_connection_can_be_made(api_key, waits):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client = VeridictClient(f"http://127.0.0.1:{port}", api_key, retries=2, sleep=waits.append)
    with pytest.raises(TransportError):
        client.outcome_record("some-id", {"label": "repaid"}, "2027-01-01T00:00:00Z")
    assert len(waits) == 2


def test_bulk_sends_chunks_and_yields_every_result_in_order(make_client, proxy):
    records = [decision(n) for n in range(5)]
    records[3] = decision(3, confidence=7)
    results = list(make_client().decisions_bulk(records, chunk_size=2))
    assert [result["index"] for result in results] == [0, 1, 2, 3, 4]
    assert [result["status"] for result in results] == [201, 201, 201, 400, 201]
    assert "confidence" in results[3]["error"]["fields"]
    assert [seen.path for seen in proxy.seen] == ["/api/v1/decisions/bulk"] * 3
    assert Decision.objects.count() == 4


def test_a_bulk_chunk_whose_answer_was_lost_is_replayed_not_duplicated(make_client, proxy):
    proxy.plan = [LOSE_ANSWER]
    results = list(make_client().decisions_bulk([decision(n) for n in range(3)]))
    assert [result["status"] for result in results] == [200, 200, 200]
    assert Decision.objects.count() == 3


def test_an_outcome_is_not_retried_once_it_may_have_reached_the_server(make_client, proxy):
    client = make_client()
    answer = client.decision_record(decision())
    proxy.plan = [BUSY]
    with pytest.raises(ApiError):
        client.outcome_record(answer["id"], {"label": "repaid"}, "2027-01-01T00:00:00Z")
    outcome = client.outcome_record(answer["id"], {"label": "repaid"}, "2027-01-01T00:00:00Z")
    assert Outcome.objects.get().entry.uuid.hex == outcome["id"].replace("-", "")


def test_a_document_is_registered_by_its_digest(make_client):
    client = make_client()
    answer = client.decision_record(decision())
    first = client.document_register(sha256="cd" * 32, decisions=[answer["id"]])
    again = client.document_register(sha256="cd" * 32, decisions=[answer["id"]])
    assert first == again
    assert Document.objects.get().decisions.get().entry.uuid.hex == answer["id"].replace("-", "")
