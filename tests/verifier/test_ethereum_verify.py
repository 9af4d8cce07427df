"""The verifier's ethereum anchor step against a scripted JSON-RPC node on loopback.

The node answers what a chain would, from a small table, and can be made to differ from the
receipt in one place at a time (or to misbehave as a node can), so that each check is seen
failing for its own reason. The backend's end-to-end path (a real EVM) is in
tests/timestamping/test_ethereum_anchor.py.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from veridict_verify import ethereum
from veridict_verify.note import note_split
from veridict_verify.receipt import receipt_verify

from timestamping import keys, selectors
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

VERIFY = Path(sys.executable).parent / "veridict-verify"
CHAIN_ID = 11155111
BLOCK = 7_000_000
TX_HASH = "0x" + "a1" * 32
BLOCK_HASH = "0x" + "b2" * 32
BLOCK_TIME = 1_795_700_000  # 2026-11-26T13:33:20Z
LATEST = BLOCK + 11


@dataclass
class ScriptedNode:
    """Answers eth_chainId, eth_getTransactionByHash, eth_getBlockByNumber and eth_blockNumber
    from `transaction` and `block`; `http_status`, `raw` and `error` make it misbehave."""

    chain_id: int = CHAIN_ID
    transaction: dict[str, Any] | None = None
    block: dict[str, Any] | None = None
    latest: int = LATEST
    http_status: int = 200
    raw: bytes | None = None
    error: str | None = None
    calls: list[tuple[str, list[Any]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/key/not-for-output"

    def result(self, method: str, params: list[Any]) -> Any:
        if method == "eth_chainId":
            return hex(self.chain_id)
        if method == "eth_getTransactionByHash":
            found = self.transaction
            return found if found and params[0] == found["hash"] else None
        if method == "eth_getBlockByNumber":
            found = self.block
            return found if found and params[0] == found["number"] else None
        if method == "eth_blockNumber":
            return hex(self.latest)
        raise AssertionError(f"the verifier asked for {method}")

    def answer(self, body: bytes) -> bytes:
        call = json.loads(body)
        self.calls.append((call["method"], call["params"]))
        if self.raw is not None:
            return self.raw
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call["id"]}
        if self.error:
            reply["error"] = {"code": -32000, "message": self.error}
        else:
            reply["result"] = self.result(call["method"], call["params"])
        return json.dumps(reply).encode()

    def start(self) -> None:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- the name http.server calls
                body = node.answer(self.rfile.read(int(self.headers["Content-Length"])))
                self.send_response(node.http_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receipt(seal) -> dict[str, Any]:
    """A sealed entry's receipt with an ethereum anchor over its own checkpoint."""
    entry, _ = entry_append(kind="test", envelope={"n": 1})
    seal()
    sealed = selectors.receipt_get(entry=entry)
    sealed["anchors"].append(
        {
            "type": "ethereum",
            "checkpoint": sealed["checkpoint"],
            "consistency": [],
            "chain_id": CHAIN_ID,
            "tx_hash": TX_HASH,
            "block_number": BLOCK,
            "block_hash": BLOCK_HASH,
            "block_time": "2026-11-26T13:33:20.000000Z",
            "confirmations": 12,
        }
    )
    return sealed


@pytest.fixture
def node(receipt) -> Iterator[ScriptedNode]:
    """A node of chain CHAIN_ID on which the receipt's anchor is true."""
    body, _ = note_split(receipt["checkpoint"])
    scripted = ScriptedNode(
        transaction={
            "hash": TX_HASH,
            "input": "0x" + hashlib.sha256(body.encode()).hexdigest(),
            "blockHash": BLOCK_HASH,
            "blockNumber": hex(BLOCK),
            "chainId": hex(CHAIN_ID),
        },
        block={
            "number": hex(BLOCK),
            "hash": BLOCK_HASH,
            "timestamp": hex(BLOCK_TIME),
            "transactions": ["0x" + "00" * 32, TX_HASH],
        },
    )
    scripted.start()
    yield scripted
    scripted.stop()


def anchor_step(receipt: dict[str, Any], *rpc_urls: str):
    report = receipt_verify(receipt, keys=[keys.verifier_key()], rpc_urls=list(rpc_urls))
    step = report.steps[-1]
    assert step.name == "anchor[1]", report.steps
    return step


def test_an_anchor_the_node_confirms_is_ok_with_its_time_and_confirmations(receipt, node):
    step = anchor_step(receipt, node.url)
    assert step.status == "ok", step.detail
    assert f"transaction {TX_HASH} on chain {CHAIN_ID} in block {BLOCK}" in step.detail
    assert "existed at 2026-11-26T13:33:20.000000Z, 12 confirmations" in step.detail
    assert [method for method, _ in node.calls] == [
        "eth_chainId",
        "eth_getTransactionByHash",
        "eth_getBlockByNumber",
        "eth_blockNumber",
    ]
    assert node.calls[2][1] == [hex(BLOCK), False]


def test_confirmations_are_counted_from_the_node_not_read_from_the_receipt(receipt, node):
    receipt["anchors"][1]["confirmations"] = 1000
    node.latest = BLOCK
    assert anchor_step(receipt, node.url).detail.endswith(
        f"1 confirmation (node {node.url.split('/key')[0]})"
    )


def test_the_node_is_named_without_the_path_of_its_url(receipt, node):
    node.chain_id = 1
    detail = anchor_step(receipt, node.url).detail
    assert node.url.split("/key")[0] in detail and "not-for-output" not in detail


def test_without_an_rpc_url_the_step_is_skipped_and_says_what_was_checked(receipt):
    step = anchor_step(receipt)
    assert step.status == "skipped"
    assert "consistency checked; no --rpc-url given, so the chain was not" in step.detail


@pytest.mark.parametrize(
    ("where", "name", "value", "reason"),
    [
        ("node", "chain_id", 1, f"serves chain 1, but the anchor is on chain {CHAIN_ID}"),
        ("transaction", None, None, f"chain {CHAIN_ID} has no transaction {TX_HASH}"),
        ("transaction", "input", "0x" + "ee" * 32, "not SHA-256 of the anchored checkpoint"),
        ("transaction", "chainId", hex(1), "is signed for chain 1"),
        ("transaction", "blockHash", None, "is not mined yet (pending)"),
        ("transaction", "blockNumber", hex(BLOCK + 1), f"not anchor block_number {BLOCK}"),
        ("transaction", "blockHash", "0x" + "c3" * 32, f"not anchor block_hash {BLOCK_HASH}"),
        ("block", None, None, f"has no block {BLOCK}: is it synced?"),
        ("block", "hash", "0x" + "d4" * 32, f"block {BLOCK} of chain {CHAIN_ID} is 0x" + "d4" * 32),
        ("block", "transactions", ["0x" + "00" * 32], f"does not list transaction {TX_HASH}"),
        ("block", "timestamp", hex(BLOCK_TIME + 1), "was made at 2026-11-26T13:33:21.000000Z"),
        ("block", "timestamp", hex(2**70), f"was made at Unix time {2**70}, not anchor block_time"),
    ],
)
def test_each_way_the_chain_can_differ_from_the_receipt_fails_for_its_own_reason(
    receipt, node, where, name, value, reason
):
    if where == "node":
        setattr(node, name, value)
    elif name is None:
        setattr(node, where, None)
    else:
        getattr(node, where)[name] = value
    step = anchor_step(receipt, node.url)
    assert step.status == "failed"
    assert reason in step.detail


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("tx_hash", TX_HASH.upper(), "anchor tx_hash is not 0x and 64 lower-case hex digits"),
        ("block_hash", "0x1234", "anchor block_hash is not 0x and 64 lower-case hex digits"),
        ("block_number", "7000000", "anchor block_number is not a whole number"),
        ("chain_id", True, "anchor chain_id is not a whole number"),
        ("block_time", "2026-11-26T10:53:20Z", "anchor block_time: time"),
    ],
)
def test_a_malformed_anchor_field_fails_naming_it_even_without_a_node(receipt, name, value, reason):
    receipt["anchors"][1][name] = value
    step = anchor_step(receipt)
    assert step.status == "failed"
    assert reason in step.detail


@pytest.mark.parametrize(
    ("misbehaviour", "reason"),
    [
        ({"http_status": 503}, "answered HTTP 503 to eth_chainId"),
        ({"raw": b"<html>rate limited</html>"}, "answered eth_chainId with no JSON"),
        ({"raw": b'{"jsonrpc": "2.0", "id": 99, "result": "0x1"}'}, "with no JSON-RPC reply"),
        ({"error": "method not allowed"}, "refused eth_chainId: method not allowed"),
    ],
)
def test_a_node_that_misbehaves_fails_the_step_saying_how(receipt, node, misbehaviour, reason):
    for name, value in misbehaviour.items():
        setattr(node, name, value)
    step = anchor_step(receipt, node.url)
    assert step.status == "failed"
    assert reason in step.detail


def test_a_node_that_does_not_answer_fails_the_step_saying_so(receipt, node):
    url = node.url
    node.stop()
    step = anchor_step(receipt, url)
    assert step.status == "failed" and "did not answer eth_chainId" in step.detail


def test_an_oversized_answer_is_refused(receipt, node, monkeypatch):
    monkeypatch.setattr(ethereum, "MAX_ANSWER_BYTES", 500)
    node.block["transactions"] = [TX_HASH] * 20
    step = anchor_step(receipt, node.url)
    assert step.status == "failed"
    assert "answered eth_getBlockByNumber with too many bytes" in step.detail


def test_a_hex_quantity_that_is_not_one_is_refused(receipt, node):
    node.block["timestamp"] = 1_795_700_000  # a JSON number, not a 0x quantity
    step = anchor_step(receipt, node.url)
    assert step.status == "failed" and "not a hex quantity" in step.detail


def test_with_several_nodes_each_anchor_is_checked_on_the_node_of_its_chain(receipt, node):
    other = ScriptedNode(chain_id=1)
    other.start()
    try:
        step = anchor_step(receipt, other.url, node.url)
        assert step.status == "ok", step.detail
        receipt["anchors"][1]["chain_id"] = 137
        step = anchor_step(receipt, other.url, node.url)
        assert step.status == "failed" and "no --rpc-url node serves chain 137" in step.detail
    finally:
        other.stop()


def test_the_command_takes_rpc_url_and_prints_the_anchor_step(receipt, node, tmp_path):
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    result = subprocess.run(
        [str(VERIFY), str(path), "--key", str(keys.verifier_key()), "--rpc-url", node.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    line = result.stdout.splitlines()[-2]
    assert line.split()[:2] == ["OK", "anchor[1]"]
    assert "12 confirmations" in line


def test_the_command_refuses_an_rpc_url_that_is_not_http(receipt, tmp_path):
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    result = subprocess.run(
        [
            str(VERIFY),
            str(path),
            "--key",
            str(keys.verifier_key()),
            "--rpc-url",
            "file:///etc/passwd",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "is not an http(s) URL" in result.stderr
