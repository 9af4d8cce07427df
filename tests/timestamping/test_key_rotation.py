"""Rotating the log key: what it signed keeps verifying, and the keys page lists every key."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from timestamping import keys, selectors
from timestamping.models import Entry
from timestamping.services import batch_seal, entry_append

pytestmark = pytest.mark.django_db


@pytest.fixture
def rotatable_key(tmp_path: Path, settings, ledger_keys: dict[str, Path]) -> Path:
    """A copy of the run's log key for this test to rotate: rotation deletes the key file, and
    every other test (and the subprocesses they start) signs with the run's key."""
    copy = tmp_path / "log-signing.pem"
    shutil.copy(ledger_keys["LOG_SIGNING_KEY_FILE"], copy)
    settings.LOG_SIGNING_KEY_FILE = copy
    return copy


def append(count: int, start: int = 0) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": start + i})[0] for i in range(count)]


def rotate() -> tuple[VerifierKey, VerifierKey]:
    """Rotates the key; returns (retired, current)."""
    retired = keys.verifier_key()
    call_command("create_log_key", rotate=True, stdout=io.StringIO())
    current = keys.verifier_key()
    assert current != retired
    return retired, current


def steps(report) -> list[tuple[str, str]]:
    return [(step.name, step.status) for step in report.steps]


def test_receipts_from_before_a_rotation_verify_with_the_old_key_and_later_ones_with_the_new(
    rotatable_key, ledger_keys, seal, tsa_ca_pem
):
    run_key_pem = ledger_keys["LOG_SIGNING_KEY_FILE"].read_bytes()
    old_entries = append(3)
    seal()
    old, new = rotate()
    new_entries = append(2, start=3)
    seal()

    assert ledger_keys["LOG_SIGNING_KEY_FILE"].read_bytes() == run_key_pem
    assert rotatable_key.read_bytes() != run_key_pem, "the retired private key is still on disk"
    for entry in old_entries:
        receipt = selectors.receipt_get(entry=entry)
        assert receipt["log"]["verifier_key"] == str(old)
        assert receipt_verify(receipt, keys=[old], tsa_ca_pem=tsa_ca_pem).ok
        assert receipt_verify(receipt, keys=[new], tsa_ca_pem=tsa_ca_pem).failed.name == "set"
    for entry in new_entries:
        receipt = selectors.receipt_get(entry=entry)
        assert receipt["log"]["verifier_key"] == str(new)
        assert receipt_verify(receipt, keys=[new], tsa_ca_pem=tsa_ca_pem).ok
        assert receipt_verify(receipt, keys=[old], tsa_ca_pem=tsa_ca_pem).failed.name == "set"


def test_an_entry_appended_before_a_rotation_and_sealed_after_needs_both_keys(
    rotatable_key, seal, tsa_ca_pem
):
    (entry,) = append(1)
    old, new = rotate()
    seal()
    receipt = selectors.receipt_get(entry=entry)
    # Its SET was signed by the old key, its checkpoint by the new one.
    assert receipt_verify(receipt, keys=[old, new], tsa_ca_pem=tsa_ca_pem).ok
    assert receipt_verify(receipt, keys=[new], tsa_ca_pem=tsa_ca_pem).failed.name == "set"
    report = receipt_verify(receipt, keys=[old], tsa_ca_pem=tsa_ca_pem)
    assert report.failed.name == "checkpoint_signature", steps(report)


def test_an_old_entry_whose_anchor_came_after_the_rotation_verifies_with_both_keys_pinned(
    rotatable_key, seal, tsa_ca_pem
):
    (entry,) = append(1)
    batch_seal()  # no after-commit stamp here, as when the stamp after a seal was lost
    old, new = rotate()
    append(1, start=1)
    seal()  # this batch's stamp is the first anchor at or after the entry's batch

    receipt = selectors.receipt_get(entry=entry)
    (anchor,) = receipt["anchors"]
    assert anchor["checkpoint"] != receipt["checkpoint"] and anchor["consistency"]
    report = receipt_verify(receipt, keys=[old, new], tsa_ca_pem=tsa_ca_pem)
    assert steps(report) == [
        ("leaf", "ok"),
        ("set", "ok"),
        ("inclusion", "ok"),
        ("checkpoint_signature", "ok"),
        ("batch_header", "ok"),
        ("anchor[0]", "ok"),
    ]
    # The anchored checkpoint is signed by the new key only: pinning the old key alone is not
    # enough, which is why the keys page publishes every key.
    report = receipt_verify(receipt, keys=[old], tsa_ca_pem=tsa_ca_pem)
    assert report.failed.name == "anchor[0]", steps(report)


def test_the_keys_endpoint_lists_the_retired_and_the_current_key(rotatable_key, seal, client):
    append(1)
    seal()
    old, new = rotate()
    append(1, start=1)
    seal()

    response = client.get("/api/v1/log/keys")
    assert response.status_code == 200
    body = response.json()
    assert body["origin"] == new.name
    listed = [(key["verifier_key"], key["key_id"], key["current"]) for key in body["log_keys"]]
    assert listed == [(str(old), old.key_id.hex(), False), (str(new), new.key_id.hex(), True)]
    for key in body["log_keys"]:
        assert VerifierKey.parse(key["verifier_key"])  # a string the verifier accepts as a pin


def test_rotating_twice_keeps_every_key_published(rotatable_key, client):
    first = keys.verifier_key()
    _, second = rotate()
    _, third = rotate()
    body = client.get("/api/v1/log/keys").json()
    assert [key["verifier_key"] for key in body["log_keys"]] == [
        str(first),
        str(second),
        str(third),
    ]
    assert [key["current"] for key in body["log_keys"]] == [False, False, True]
