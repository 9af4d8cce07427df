"""The Ethereum anchor backend against eth-tester (py-evm in process), spoken to over JSON-RPC.

eth-tester has no server of its own: `LoopbackNode` puts a small JSON-RPC HTTP server on loopback in
front of it, so the backend (web3's HTTP provider) and `veridict-verify --rpc-url` talk to it as
they talk to a real node.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from eth_account import Account
from eth_tester import EthereumTester
from veridict_verify.formats import format_time
from veridict_verify.receipt import receipt_verify
from web3 import EthereumTesterProvider, Web3

from timestamping import anchor_backends, keys, selectors
from timestamping.models import Anchor, AnchorJob, AnchorReorg, Batch, Entry
from timestamping.services import entry_append
from timestamping.services.anchoring import (
    anchor_job_run,
    anchor_jobs_due,
    anchors_sweep,
    checkpoint_body,
)

pytestmark = pytest.mark.django_db

VERIFY = Path(sys.executable).parent / "veridict-verify"
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
INTERVAL = 600
CONFIRMATIONS = 3
KEY_VARIABLE = "VERIDICT_TEST_ETH_KEY"
# Where a hosted node's URL keeps its API key; reasons must not show it.
SECRET_PATH = "/v3/not-for-receipts"


def _rpc_json(value: Any) -> Any:
    """eth-tester's results in JSON-RPC form: quantities and byte strings as 0x-hex."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return hex(value)
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, dict):
        return {key: _rpc_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_rpc_json(item) for item in value]
    raise TypeError(f"no JSON-RPC form for {type(value).__name__}")


class LoopbackNode:
    """eth-tester behind JSON-RPC over HTTP on 127.0.0.1; can be stopped and started again."""

    def __init__(self) -> None:
        self.tester = EthereumTester()
        provider = EthereumTesterProvider(self.tester)
        # The provider's own middleware turns eth-tester's answers into JSON-RPC fields; web3's
        # (attribute dicts, HexBytes) stays out.
        bare = Web3(provider, middleware=[])
        self._request = provider.request_func(bare, bare.middleware_onion)
        self.web3 = Web3(provider)  # for the test's own look at the chain
        self._lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0
        self.calls: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{SECRET_PATH}"

    @property
    def chain_id(self) -> int:
        return self.web3.eth.chain_id

    def answer(self, call: dict[str, Any]) -> dict[str, Any]:
        with self._lock:  # eth-tester is not thread-safe
            self.calls.append(call["method"])
            try:
                response = self._request(call["method"], call.get("params", []))
            except Exception as exc:
                response = {"error": {"code": -32000, "message": str(exc)}}
        reply: dict[str, Any] = {"jsonrpc": "2.0", "id": call.get("id")}
        if response.get("error"):
            reply["error"] = response["error"]
        else:
            reply["result"] = _rpc_json(response.get("result"))
        return reply

    def start(self) -> None:
        node = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- the name http.server calls
                call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                body = json.dumps(node.answer(call)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None

    def fund(self, address: str) -> None:
        self.web3.eth.send_transaction(
            {"from": self.web3.eth.accounts[0], "to": address, "value": 10**18}
        )

    def mine(self, blocks: int) -> None:
        with self._lock:
            self.tester.mine_blocks(blocks)

    def sent_by(self, address: str) -> int:
        return self.web3.eth.get_transaction_count(address, "latest")


@pytest.fixture
def node() -> Iterator[LoopbackNode]:
    loopback_node = LoopbackNode()
    loopback_node.start()
    yield loopback_node
    if loopback_node.server is not None:
        loopback_node.stop()


@pytest.fixture
def account(node: LoopbackNode, monkeypatch: pytest.MonkeyPatch):
    """A funded account whose key is in the environment variable the backend names."""
    created = Account.create()
    node.fund(created.address)
    monkeypatch.setenv(KEY_VARIABLE, created.key.hex())
    return created


def backend_config(node: LoopbackNode, **changes: Any) -> dict[str, Any]:
    return {
        "name": "chain",
        "type": "ethereum",
        "rpc_url": node.url,
        "chain_id": node.chain_id,
        "key_env": KEY_VARIABLE,
        "interval": INTERVAL,
        "confirmations": CONFIRMATIONS,
        "timeout": 5,
        "wait": 1,
        **changes,
    }


@pytest.fixture
def ethereum(node: LoopbackNode, account, settings) -> LoopbackNode:
    settings.ANCHOR_BACKENDS = [backend_config(node)]
    settings.ANCHOR_SWEEP_INTERVAL_SECONDS = 30
    return node


def append(count: int) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": n})[0] for n in range(count)]


def anchor_now(now: datetime) -> AnchorJob:
    (job,) = anchor_jobs_due(now=now)
    result = anchor_job_run(job_id=job.pk, now=now)
    assert result is not None
    return result


def chain_anchor(receipt: dict[str, Any]) -> dict[str, Any]:
    (anchor,) = [a for a in receipt["anchors"] if a["type"] == "ethereum"]
    return anchor


def test_the_checkpoint_digest_is_sent_from_the_account_to_itself_and_recorded_where_mined(
    ethereum, account, seal
):
    append(2)
    batch = seal()
    job = anchor_now(T0)
    assert job.status == "anchored"  # mined, 1 of 3 confirmations

    anchor = Anchor.objects.get(backend="chain")
    transaction = ethereum.web3.eth.get_transaction(anchor.tx_hash)
    assert bytes(transaction["input"]) == hashlib.sha256(checkpoint_body(batch)).digest()
    assert transaction["from"] == transaction["to"] == account.address
    assert transaction["value"] == 0
    block = ethereum.web3.eth.get_block(anchor.block_number)
    assert (anchor.type, anchor.chain_id) == ("ethereum", ethereum.chain_id)
    assert anchor.block_hash == "0x" + bytes(block["hash"]).hex()
    assert anchor.block_time == datetime.fromtimestamp(block["timestamp"], tz=UTC)
    assert anchor.tx_hash == "0x" + bytes(transaction["hash"]).hex()


def test_confirmations_grow_as_blocks_are_mined_and_the_job_turns_final_at_the_configured_number(
    ethereum, seal
):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    job = AnchorJob.objects.get(backend="chain")
    assert chain_anchor(selectors.receipt_get(entry=entry))["confirmations"] == 1

    ethereum.mine(1)
    assert anchors_sweep(now=T0 + timedelta(seconds=1))["confirmed"] == 0
    job.refresh_from_db()
    assert (job.status, job.detail["confirmations"]) == ("anchored", 2)
    status = next(
        s for s in selectors.receipt_get(entry=entry)["anchor_status"] if s["backend"] == "chain"
    )
    assert (status["type"], status["status"]) == ("ethereum", "anchored")

    ethereum.mine(1)
    assert anchors_sweep(now=T0 + timedelta(seconds=60))["confirmed"] == 1
    job.refresh_from_db()
    assert (job.status, job.detail["confirmations"], job.next_attempt_at) == ("final", 3, None)
    assert chain_anchor(selectors.receipt_get(entry=entry))["confirmations"] == 3


def test_a_chain_that_confirms_in_one_block_makes_the_job_final_at_once(
    node, account, settings, seal
):
    settings.ANCHOR_BACKENDS = [backend_config(node, confirmations=1)]
    append(1)
    seal()
    assert anchor_now(T0).status == "final"


def test_an_earlier_entrys_receipt_verifies_against_the_node_given_by_rpc_url(
    ethereum, seal, tmp_path, ledger_keys
):
    (early,) = append(1)
    seal()
    append(3)
    seal()
    anchor_now(T0)
    ethereum.mine(2)
    anchors_sweep(now=T0 + timedelta(seconds=1))
    receipt = selectors.receipt_get(entry=early)
    anchor = chain_anchor(receipt)
    assert anchor["checkpoint"] == Batch.objects.get(number=2).checkpoint
    assert anchor["consistency"], "batch 1's tree must be proven a prefix of batch 2's"
    assert list(anchor) == [
        "type",
        "checkpoint",
        "consistency",
        "chain_id",
        "tx_hash",
        "block_number",
        "block_hash",
        "block_time",
        "confirmations",
    ]
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))

    result = subprocess.run(
        [
            str(VERIFY),
            str(path),
            "--key",
            str(keys.verifier_key()),
            "--tsa-ca",
            str(ledger_keys["TSA_CA_CERT_FILE"]),
            "--rpc-url",
            ethereum.url,
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    step = report["steps"][-1]
    assert (report["verdict"], step["name"], step["status"]) == ("verified", "anchor[1]", "ok")
    assert f"existed at {anchor['block_time']}" in step["detail"]
    assert "3 confirmations" in step["detail"]
    assert SECRET_PATH not in result.stdout
    assert {"eth_getTransactionByHash", "eth_getBlockByNumber"} <= set(ethereum.calls)


def test_without_rpc_url_the_chain_is_not_checked_and_the_step_says_so(ethereum, seal):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    report = receipt_verify(selectors.receipt_get(entry=entry), keys=[keys.verifier_key()])
    step = report.steps[-1]
    assert (step.name, step.status) == ("anchor[1]", "skipped")
    assert "no --rpc-url given" in step.detail and "consistency checked" in step.detail


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("tx_hash", "0x" + "ab" * 32, "has no transaction 0x" + "ab" * 32),
        ("block_hash", "0x" + "cd" * 32, "not anchor block_hash 0x" + "cd" * 32),
        ("block_number", 1, "not anchor block_number 1"),
        ("block_time", "2026-01-01T00:00:00.000000Z", "not anchor block_time"),
        ("chain_id", 1, "but the anchor is on chain 1"),
        ("checkpoint", "edited", "anchor checkpoint"),
    ],
)
def test_a_tampered_anchor_field_fails_the_anchor_step_naming_what_differs(
    ethereum, seal, field, value, reason
):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    receipt = selectors.receipt_get(entry=entry)
    anchor = chain_anchor(receipt)
    if field == "checkpoint":
        anchor["checkpoint"] = anchor["checkpoint"].replace("\n", "\n ", 1)
    else:
        anchor[field] = value
    report = receipt_verify(receipt, keys=[keys.verifier_key()], rpc_urls=[ethereum.url])
    assert report.failed is not None and report.failed.name == "anchor[1]", report.steps
    assert reason in report.failed.detail


def test_an_anchor_naming_another_genuine_checkpoint_fails_on_the_transactions_data(ethereum, seal):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    receipt = selectors.receipt_get(entry=entry)
    # A later checkpoint of the same log, with a true consistency proof to it: everything but
    # the chain agrees, and the transaction carries the digest of the first one.
    append(1)
    seal()
    later = Batch.objects.get(number=2)
    anchor = chain_anchor(receipt)
    anchor["checkpoint"] = later.checkpoint
    anchor["consistency"] = [
        step.hex() for step in selectors.proof_consistency(old_size=1, new_size=later.tree_size)
    ]
    report = receipt_verify(receipt, keys=[keys.verifier_key()], rpc_urls=[ethereum.url])
    assert report.failed is not None and report.failed.name == "anchor[1]", report.steps
    assert "not SHA-256 of the anchored checkpoint" in report.failed.detail


def test_a_transaction_not_mined_within_the_wait_is_looked_for_again_and_not_sent_twice(
    ethereum, account, seal
):
    append(1)
    seal()
    ethereum.tester.disable_auto_mine_transactions()
    job = anchor_now(T0)
    assert job.status == "failed"
    assert "not mined within 1 s" in job.last_error
    (sent,) = job.detail["sent"]
    assert sent in job.last_error
    assert not Anchor.objects.filter(backend="chain").exists()

    ethereum.mine(1)  # the pending transaction goes into a block
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert job.status == "anchored"
    assert Anchor.objects.get(backend="chain").tx_hash == sent
    assert ethereum.sent_by(account.address) == 1


def test_a_transaction_still_pending_at_the_retry_is_replaced_with_higher_fees_not_doubled(
    ethereum, account, seal
):
    append(1)
    seal()
    ethereum.tester.disable_auto_mine_transactions()
    job = anchor_now(T0)
    (first,) = job.detail["sent"]
    original = ethereum.web3.eth.get_transaction(first)
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert job.status == "failed"
    assert job.detail["sent"][0] == first
    bumped = ethereum.web3.eth.get_transaction(job.detail["sent"][1])
    assert original["nonce"] == bumped["nonce"] == 0
    # Nodes take a replacement only with both fees raised by 10 % or more.
    assert bumped["maxFeePerGas"] >= original["maxFeePerGas"] * 1.1
    assert bumped["maxPriorityFeePerGas"] >= original["maxPriorityFeePerGas"] * 1.1
    replacement = job.detail["sent"][1]

    ethereum.mine(1)
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert job.status == "anchored"
    assert Anchor.objects.get(backend="chain").tx_hash == replacement
    assert ethereum.sent_by(account.address) == 1


def test_a_node_that_is_down_fails_the_try_with_a_reason_that_keeps_the_url_path_out(
    ethereum, seal
):
    append(1)
    seal()
    ethereum.stop()
    job = anchor_now(T0)
    assert job.status == "failed"
    assert f"http://127.0.0.1:{ethereum.port}" in job.last_error
    assert "not-for-receipts" not in job.last_error
    assert seal() is None  # nothing new to seal, and no error: sealing never waits on anchors
    append(1)
    assert seal().number == 2

    ethereum.start()
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert (job.status, job.last_error) == ("anchored", "")


def test_a_node_of_another_chain_is_refused_before_anything_is_sent(node, account, settings, seal):
    settings.ANCHOR_BACKENDS = [backend_config(node, chain_id=1)]
    append(1)
    seal()
    job = anchor_now(T0)
    assert job.status == "failed"
    assert f"serves chain {node.chain_id}, not the configured chain_id 1" in job.last_error
    assert node.sent_by(account.address) == 0


def test_an_account_that_cannot_pay_fails_naming_the_account_and_the_nodes_reason(
    node, settings, seal, monkeypatch
):
    unfunded = Account.create()
    monkeypatch.setenv(KEY_VARIABLE, unfunded.key.hex())
    settings.ANCHOR_BACKENDS = [backend_config(node)]
    append(1)
    seal()
    job = anchor_now(T0)
    assert job.status == "failed"
    assert f"cannot send from account {unfunded.address}" in job.last_error
    assert "the node answered: " in job.last_error and "balance 0" in job.last_error


def test_the_key_comes_from_a_file_or_variable_named_in_the_config_and_is_stored_nowhere(
    node, account, settings, seal, tmp_path, monkeypatch
):
    key_file = tmp_path / "anchor.key"
    key_file.write_text(account.key.hex() + "\n")
    monkeypatch.delenv(KEY_VARIABLE)
    settings.ANCHOR_BACKENDS = [backend_config(node, key_env=None, key_file=str(key_file))]
    settings.ANCHOR_BACKENDS[0].pop("key_env")
    (entry,) = append(1)
    seal()
    assert anchor_now(T0).status == "anchored"

    key_hex = account.key.hex().removeprefix("0x")
    stored = json.dumps(
        [list(AnchorJob.objects.values()), list(Anchor.objects.values())], default=str
    )
    assert key_hex not in stored.lower()
    assert key_hex not in json.dumps(selectors.receipt_get(entry=entry)).lower()


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        (None, f"the environment variable {KEY_VARIABLE}, which should hold the account key"),
        ("0x1234 not a key", "does not hold a private key"),
    ],
)
def test_a_missing_or_malformed_key_fails_the_try_without_quoting_it(
    node, settings, seal, monkeypatch, key, reason
):
    if key is None:
        monkeypatch.delenv(KEY_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(KEY_VARIABLE, key)
    settings.ANCHOR_BACKENDS = [backend_config(node)]
    append(1)
    seal()
    job = anchor_now(T0)
    assert job.status == "failed" and reason in job.last_error
    assert "1234" not in job.last_error


def test_a_transaction_reorganised_out_of_its_block_is_anchored_again_and_the_old_one_kept(
    ethereum, account, seal
):
    (entry,) = append(1)
    seal()
    snapshot = ethereum.tester.take_snapshot()
    anchor_now(T0)
    dropped = Anchor.objects.get(backend="chain")
    ethereum.tester.revert_to_snapshot(snapshot)  # another branch wins: the block is gone
    ethereum.mine(5)

    anchors_sweep(now=T0 + timedelta(seconds=1))  # sees the reorganisation
    job = AnchorJob.objects.get(backend="chain")
    assert job.status == "pending" and job.next_attempt_at == T0 + timedelta(seconds=1)
    assert "reorganisation" in job.last_error and "not in any block" in job.last_error
    assert "reorganisation" in dropped.reorg.reason
    receipt = selectors.receipt_get(entry=entry)
    assert [a for a in receipt["anchors"] if a["type"] == "ethereum"] == []  # no dropped anchor

    anchors_sweep(now=T0 + timedelta(seconds=2))  # anchors the checkpoint again
    job.refresh_from_db()
    assert job.status == "anchored" and job.detail["reorganised"] == [dropped.tx_hash]
    live = Anchor.objects.get(backend="chain", reorg__isnull=True)
    assert live.replaces == dropped and live.batch == dropped.batch
    assert live.tx_hash != dropped.tx_hash  # a new transaction
    assert Anchor.objects.filter(backend="chain").count() == 2  # the old evidence kept
    receipt = selectors.receipt_get(entry=entry)
    assert chain_anchor(receipt)["tx_hash"] == live.tx_hash
    ethereum.mine(2)
    anchors_sweep(now=T0 + timedelta(seconds=40))
    job.refresh_from_db()
    assert job.status == "final"
    report = receipt_verify(
        selectors.receipt_get(entry=entry), keys=[keys.verifier_key()], rpc_urls=[ethereum.url]
    )
    assert report.ok, report.steps


def test_a_node_that_has_lost_the_receipt_while_the_block_stands_is_not_taken_for_a_reorg(
    ethereum, seal, monkeypatch
):
    """Only a changed block at the anchor's height is a reorganisation: a node out of step
    (no receipt, the same block) leaves the anchor alone and is asked again."""
    append(1)
    seal()
    anchor_now(T0)
    monkeypatch.setattr(anchor_backends.EthereumBackend, "_receipt_first", lambda *a: None)
    anchors_sweep(now=T0 + timedelta(seconds=1))
    job = AnchorJob.objects.get(backend="chain")
    assert job.status == "anchored" and "inconsistently" in job.last_error
    assert not AnchorReorg.objects.exists()


def test_a_node_down_while_confirmations_are_counted_leaves_the_job_anchored_with_the_reason(
    ethereum, seal
):
    append(1)
    seal()
    anchor_now(T0)
    ethereum.stop()
    outcome = anchors_sweep(now=T0 + timedelta(seconds=1))
    job = AnchorJob.objects.get(backend="chain")
    assert outcome["confirmed"] == 0
    assert job.status == "anchored" and "127.0.0.1" in job.last_error
    assert job.next_attempt_at == T0 + timedelta(seconds=31)

    ethereum.start()
    ethereum.mine(2)
    anchors_sweep(now=job.next_attempt_at)
    job.refresh_from_db()
    assert (job.status, job.last_error) == ("final", "")


def test_the_block_time_in_receipts_is_the_blocks_own_time(ethereum, seal):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    anchor = chain_anchor(selectors.receipt_get(entry=entry))
    block = ethereum.web3.eth.get_block(anchor["block_number"])
    assert anchor["block_time"] == format_time(datetime.fromtimestamp(block["timestamp"], tz=UTC))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"rpc_url": "file:///etc/passwd"}, "rpc_url must be the http(s) URL"),
        ({"chain_id": 0}, "chain_id must be the chain's id"),
        ({"chain_id": 2**53}, "chain_id must be the chain's id"),
        ({"chain_id": True}, "chain_id must be the chain's id"),
        ({"key_env": None}, "exactly one of key_env"),
        ({"key_file": "/etc/key"}, "exactly one of key_env"),
        ({"key_env": "NOT A NAME"}, "key_env must name an environment variable"),
        ({"to": "0x1234"}, "to must be an address"),
        # EIP-55: the capitals of a mixed-case address are a checksum; one changed breaks it.
        ({"to": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"}, "to must be an address"),
        ({"confirmations": 0}, "confirmations must be a whole number"),
        ({"wait": 600}, "wait must be a positive number of seconds, at most 60"),
        ({"key": "0xabc"}, "unknown fields ['key']"),
    ],
)
def test_a_misconfigured_ethereum_backend_is_refused_naming_the_field(changes, reason):
    entry = {
        "name": "chain",
        "type": "ethereum",
        "rpc_url": "http://127.0.0.1:8545",
        "chain_id": 1337,
        "key_env": KEY_VARIABLE,
        "interval": INTERVAL,
        **changes,
    }
    entry = {name: value for name, value in entry.items() if value is not None}
    with pytest.raises(ImproperlyConfigured) as caught:
        anchor_backends.backends_parse([entry])
    assert reason in str(caught.value)


def test_a_valid_checksummed_or_lower_case_address_is_accepted_as_the_recipient():
    for to in (
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
    ):
        (backend,) = anchor_backends.backends_parse(
            [
                {
                    "name": "chain",
                    "type": "ethereum",
                    "rpc_url": "http://127.0.0.1:8545",
                    "chain_id": 1337,
                    "key_env": KEY_VARIABLE,
                    "interval": INTERVAL,
                    "to": to,
                }
            ]
        ).values()
        assert (backend.to, backend.confirmations) == (to, 12)


def test_a_configured_recipient_receives_the_transaction(node, account, settings, seal):
    recipient = Account.create().address
    settings.ANCHOR_BACKENDS = [backend_config(node, to=recipient.lower())]
    append(1)
    seal()
    anchor_now(T0)
    transaction = node.web3.eth.get_transaction(Anchor.objects.get(backend="chain").tx_hash)
    assert transaction["to"] == recipient
