"""The veridict-verify command, run as a user runs it: a subprocess on files."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from timestamping import keys, selectors
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

COMMAND = Path(sys.executable).parent / "veridict-verify"


def verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(COMMAND), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def sealed_receipt(seal, tmp_path, ledger_keys):
    entry, _ = entry_append(kind="document", envelope={"sha256": "ab" * 32})
    seal()
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(selectors.receipt_get(entry=entry)))
    return path


def test_a_valid_receipt_prints_every_step_and_exits_zero(sealed_receipt, ledger_keys):
    result = verify(
        str(sealed_receipt),
        "--key",
        str(keys.verifier_key()),
        "--tsa-ca",
        str(ledger_keys["TSA_CA_CERT_FILE"]),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    names = [line.split()[1] for line in result.stdout.splitlines()[:-1]]
    assert names == [
        "leaf",
        "set",
        "inclusion",
        "checkpoint_signature",
        "batch_header",
        "anchor[0]",
    ]
    assert result.stdout.splitlines()[-1] == "VERIFIED"


def test_json_output_names_the_failing_step_and_exits_one(sealed_receipt):
    receipt = json.loads(sealed_receipt.read_text())
    receipt["proof"]["leaf_index"] += 1
    sealed_receipt.write_text(json.dumps(receipt))
    result = verify(str(sealed_receipt), "--key", str(keys.verifier_key()), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["verdict"] == "failed"
    assert report["steps"][-1]["name"] == "inclusion"
    assert report["steps"][-1]["status"] == "failed"


def test_without_a_pinned_tsa_ca_the_anchor_is_reported_skipped_not_verified(sealed_receipt):
    result = verify(str(sealed_receipt), "--key", str(keys.verifier_key()), "--json")
    assert result.returncode == 0
    anchor = json.loads(result.stdout)["steps"][-1]
    assert (anchor["name"], anchor["status"]) == ("anchor[0]", "skipped")


def test_document_flag_checks_the_registered_digest(sealed_receipt, tmp_path):
    other = tmp_path / "other.bin"
    other.write_bytes(b"not the registered document")
    result = verify(
        str(sealed_receipt), "--key", str(keys.verifier_key()), "--document", str(other)
    )
    assert result.returncode == 1
    assert "FAILED   leaf" in result.stdout


def test_document_flag_accepts_the_registered_file(tmp_path, seal):
    import hashlib

    document = tmp_path / "contract.pdf"
    document.write_bytes(b"%PDF-1.7 a contract")
    entry, _ = entry_append(
        kind="document", envelope={"sha256": hashlib.sha256(document.read_bytes()).hexdigest()}
    )
    seal()
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(selectors.receipt_get(entry=entry)))
    result = verify(str(receipt), "--key", str(keys.verifier_key()), "--document", str(document))
    assert result.returncode == 0, result.stdout


def test_a_pending_receipt_exits_three(tmp_path):
    entry, _ = entry_append(kind="test", envelope={})
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(selectors.receipt_get(entry=entry)))
    result = verify(str(path), "--key", str(keys.verifier_key()))
    assert result.returncode == 3
    assert result.stdout.splitlines()[-1] == "PENDING"


def test_unreadable_input_exits_two_with_a_message(tmp_path):
    path = tmp_path / "receipt.json"
    path.write_text("{not json")
    result = verify(str(path), "--key", str(keys.verifier_key()))
    assert result.returncode == 2
    assert "veridict-verify:" in result.stderr
    assert verify(str(path), "--key", "not-a-key").returncode == 2


def test_a_changed_canonical_byte_fails_the_leaf_step(sealed_receipt):
    receipt = json.loads(sealed_receipt.read_text())
    canonical = bytearray(base64.b64decode(receipt["entry"]["canonical_b64"]))
    canonical[-3] ^= 1
    receipt["entry"]["canonical_b64"] = base64.b64encode(bytes(canonical)).decode()
    sealed_receipt.write_text(json.dumps(receipt))
    result = verify(str(sealed_receipt), "--key", str(keys.verifier_key()), "--json")
    assert json.loads(result.stdout)["steps"][0] == {
        "name": "leaf",
        "status": "failed",
        "detail": "SHA-256(0x00 || canonical bytes) is not entry.leaf_hash",
    }
