"""The Ethereum anchor backend against a real JSON-RPC node on loopback: Foundry's anvil (npm
`@foundry-rs/anvil`, whose package carries the binary), started as a subprocess; receipts verify
with `veridict-verify --rpc-url`.

Why anvil: PyPI has no maintained JSON-RPC node (eth-tester is a library, used in process by
tests/timestamping/test_ethereum_anchor.py; eth-tester-rpc was last released in 2020),
Debian has no geth, and of npm's nodes anvil behaves like geth where it matters here: its pending
nonce counts pending transactions and a replacement takes the place of the transaction it replaces
(ganache 7.9.2, with its miner stopped, mines both and counts neither as pending). It installs from
the lock file and runs fully offline. .ci/run installs it into var/eth-node:

    mkdir -p var/eth-node
    cp tests/integration/node/package.json tests/integration/node/package-lock.json var/eth-node/
    npm ci --prefix var/eth-node --ignore-scripts --no-audit --no-fund

VERIDICT_ANVIL may name another anvil executable. Without one these tests skip, and fail under
VERIDICT_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from eth_account import Account
from veridict_verify.receipt import receipt_verify

from tests.conftest import missing
from timestamping import keys, selectors
from timestamping.models import Anchor, AnchorJob
from timestamping.services import entry_append
from timestamping.services.anchoring import anchor_job_run, anchor_jobs_due, anchors_sweep

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

VERIFY = Path(sys.executable).parent / "veridict-verify"
START_SECONDS = 30
CHAIN_ID = 1337
CONFIRMATIONS = 3
KEY_VARIABLE = "VERIDICT_TEST_ANVIL_KEY"
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


def anvil_executable() -> str:
    """The anvil binary, or a skip (a failure under .ci/run) saying how to install it."""
    if os.environ.get("VERIDICT_ANVIL"):
        candidates = [Path(os.environ["VERIDICT_ANVIL"])]
    else:
        # The binary itself, from the platform's package, rather than npm's Node.js wrapper:
        # stopping the wrapper would leave anvil to be reaped by nobody.
        packages = Path(settings.BASE_DIR) / "var" / "eth-node" / "node_modules" / "@foundry-rs"
        candidates = sorted(packages.glob("anvil-*/bin/anvil"))
    found = [path for path in candidates if path.is_file() and os.access(path, os.X_OK)]
    if found:
        return str(found[0])
    missing(
        "anvil is not installed (VERIDICT_ANVIL, or npm ci --prefix var/eth-node with "
        "tests/integration/node/package*.json)"
    )


class Anvil:
    """An anvil node on a free loopback port."""

    def __init__(self, executable: str, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log = directory / "anvil.log"
        self.process = subprocess.Popen(
            [
                executable,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--chain-id",
                str(CHAIN_ID),
                "--silent",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        while True:
            try:
                if self.call("eth_chainId") == hex(CHAIN_ID):
                    return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"anvil did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def call(self, method: str, *params: Any) -> Any:
        request = urllib.request.Request(
            self.url,
            data=json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
            ).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read())
        if "error" in answer:
            raise AssertionError(f"anvil refused {method}: {answer['error']}")
        return answer["result"]

    def mine(self, blocks: int) -> None:
        for _ in range(blocks):
            self.call("evm_mine")

    def sent_by(self, address: str) -> int:
        return int(self.call("eth_getTransactionCount", address, "latest"), 16)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def account(monkeypatch: pytest.MonkeyPatch):
    created = Account.create()
    monkeypatch.setenv(KEY_VARIABLE, created.key.hex())
    return created


@pytest.fixture
def anvil(tmp_path: Path, account, settings) -> Iterator[Anvil]:
    node = Anvil(anvil_executable(), tmp_path)
    node.call("anvil_setBalance", account.address, hex(10**20))
    settings.ANCHOR_BACKENDS = [
        {
            "name": "anvil",
            "type": "ethereum",
            "rpc_url": node.url,
            "chain_id": CHAIN_ID,
            "key_env": KEY_VARIABLE,
            "interval": 600,
            "confirmations": CONFIRMATIONS,
            "timeout": 10,
            "wait": 1,
        }
    ]
    settings.ANCHOR_SWEEP_INTERVAL_SECONDS = 30
    yield node
    node.stop()


def anchor_now(now: datetime) -> AnchorJob:
    (job,) = anchor_jobs_due(now=now)
    result = anchor_job_run(job_id=job.pk, now=now)
    assert result is not None
    return result


def test_entries_anchored_on_a_real_node_turn_final_and_their_receipts_verify_with_rpc_url(
    anvil, seal, tmp_path, ledger_keys
):
    early, _ = entry_append(kind="test", envelope={"n": 1})
    seal()
    entry_append(kind="test", envelope={"n": 2})
    seal()
    job = anchor_now(T0)
    assert job.status == "anchored"
    anchor = Anchor.objects.get(backend="anvil")
    transaction = anvil.call("eth_getTransactionByHash", anchor.tx_hash)
    assert transaction["blockHash"] == anchor.block_hash
    assert int(transaction["blockNumber"], 16) == anchor.block_number

    anvil.mine(CONFIRMATIONS - 1)
    anchors_sweep(now=T0 + timedelta(seconds=1))
    job.refresh_from_db()
    assert (job.status, job.detail["confirmations"]) == ("final", CONFIRMATIONS)

    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(selectors.receipt_get(entry=early)))
    result = subprocess.run(
        [
            str(VERIFY),
            str(path),
            "--key",
            str(keys.verifier_key()),
            "--tsa-ca",
            str(ledger_keys["TSA_CA_CERT_FILE"]),
            "--rpc-url",
            anvil.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    anchor_line = result.stdout.splitlines()[-2]
    assert anchor_line.split()[:2] == ["OK", "anchor[1]"]
    assert f"{CONFIRMATIONS} confirmations" in anchor_line
    assert result.stdout.splitlines()[-1] == "VERIFIED"


def test_a_transaction_still_pending_at_the_retry_is_replaced_and_only_one_is_ever_mined(
    anvil, account, seal
):
    entry_append(kind="test", envelope={"n": 1})
    seal()
    anvil.call("evm_setAutomine", False)
    job = anchor_now(T0)
    assert job.status == "failed" and "not mined within 1 s" in job.last_error
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert job.status == "failed"
    first, replacement = job.detail["sent"]
    pending = anvil.call("eth_getTransactionByHash", replacement)
    assert int(pending["nonce"], 16) == 0

    anvil.mine(1)
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert job.status == "anchored"
    assert Anchor.objects.get(backend="anvil").tx_hash == replacement
    assert anvil.call("eth_getTransactionReceipt", first) is None
    assert anvil.sent_by(account.address) == 1


def test_a_transaction_mined_after_its_try_gave_up_is_found_by_the_next_try_not_sent_again(
    anvil, account, seal
):
    entry_append(kind="test", envelope={"n": 1})
    seal()
    anvil.call("evm_setAutomine", False)
    job = anchor_now(T0)
    (sent,) = job.detail["sent"]
    anvil.mine(1)
    job = anchor_job_run(job_id=job.pk, now=job.next_attempt_at)
    assert job.status == "anchored"
    assert Anchor.objects.get(backend="anvil").tx_hash == sent
    assert anvil.sent_by(account.address) == 1


def test_a_reorganisation_on_a_real_node_anchors_the_checkpoint_again_with_a_new_transaction(
    anvil, seal
):
    entry, _ = entry_append(kind="test", envelope={"n": 1})
    seal()
    snapshot = anvil.call("evm_snapshot")
    anchor_now(T0)
    dropped = Anchor.objects.get(backend="anvil")
    anvil.call("evm_revert", snapshot)  # the anchor's block is dropped for another branch
    anvil.mine(CONFIRMATIONS + 2)
    assert anvil.call("eth_getBlockByNumber", hex(dropped.block_number), False)["hash"] != (
        dropped.block_hash
    )

    anchors_sweep(now=T0 + timedelta(seconds=1))
    job = AnchorJob.objects.get(backend="anvil")
    assert job.status == "pending"
    assert "reorganisation" in job.last_error and dropped.tx_hash in job.last_error
    assert dropped.reorg.detected_at == T0 + timedelta(seconds=1)

    anchors_sweep(now=T0 + timedelta(seconds=2))
    job.refresh_from_db()
    live = Anchor.objects.get(backend="anvil", reorg__isnull=True)
    assert job.status == "anchored" and live.replaces == dropped
    assert live.tx_hash != dropped.tx_hash
    assert anvil.call("eth_getTransactionByHash", live.tx_hash)["blockHash"] == live.block_hash
    anvil.mine(CONFIRMATIONS - 1)
    anchors_sweep(now=T0 + timedelta(seconds=60))
    job.refresh_from_db()
    assert job.status == "final"

    receipt = selectors.receipt_get(entry=entry)
    (chain_anchor,) = [a for a in receipt["anchors"] if a["type"] == "ethereum"]
    assert chain_anchor["tx_hash"] == live.tx_hash  # only the live anchor
    report = receipt_verify(receipt, keys=[keys.verifier_key()], rpc_urls=[anvil.url])
    assert report.ok, report.steps
    assert Anchor.objects.filter(backend="anvil").count() == 2  # the dropped one kept
