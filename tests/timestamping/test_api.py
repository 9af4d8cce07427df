"""The log's read API as its users call it: checkpoint, keys, batches, receipts, proofs, schema."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import uuid
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from veridict_verify import merkle
from veridict_verify.formats import Checkpoint
from veridict_verify.note import VerifierKey, note_open
from veridict_verify.receipt import receipt_verify

from timestamping.models import Batch, Entry
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

RECEIPT_MEDIA_TYPE = "application/vnd.veridict.receipt+json"
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"


def append(count: int, start: int = 0) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": start + i})[0] for i in range(count)]


@pytest.fixture
def small_log(seal) -> list[Entry]:
    """One batch of 5 entries, stamped: enough for the tests of refusals."""
    entries = append(5)
    seal()
    return entries


@pytest.fixture
def sealed_log(seal) -> list[Entry]:
    """Two batches: 5 entries, then 300 more (a second tile's worth), each batch stamped."""
    entries = append(5)
    seal()
    entries += append(300, start=5)
    seal()
    return entries


def assert_error(response, status: int, field: str | None = None) -> dict:
    """Every API failure answers {"error": {"code", "message", "fields"}}, naming a bad field."""
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["fields"], dict)
    if field is not None:
        assert field in error["fields"], error
        assert field in error["message"], error
    return error


def pins(client) -> tuple[list[VerifierKey], bytes]:
    """The keys and TSA CA a verifier pins, taken from the keys page as the docs tell users to."""
    body = client.get("/api/v1/log/keys").json()
    keys = [VerifierKey.parse(key["verifier_key"]) for key in body["log_keys"]]
    return keys, body["tsa_ca_pem"].encode()


def checkpoint_open(note: str, keys: list[VerifierKey]) -> Checkpoint:
    text, _ = note_open(note, keys)
    return Checkpoint.parse(text)


# --- /api/v1/log/checkpoint ------------------------------------------------------------------


def test_the_checkpoint_is_a_404_json_error_before_anything_is_sealed(client):
    append(2)  # pending entries are not a checkpoint yet
    assert_error(client.get("/api/v1/log/checkpoint"), 404)


def test_the_checkpoint_is_the_latest_batch_signed_checkpoint_as_text(client, sealed_log):
    response = client.get("/api/v1/log/checkpoint")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    latest = Batch.objects.order_by("-number").first()
    assert latest.number == 2
    assert response.content.decode() == latest.checkpoint
    keys, _ = pins(client)
    checkpoint = checkpoint_open(response.content.decode(), keys)
    assert checkpoint.tree_size == 305
    assert checkpoint.root == merkle.root_from_leaves([bytes(e.leaf_hash) for e in sealed_log])


# --- /api/v1/log/keys ------------------------------------------------------------------------


def test_the_keys_page_publishes_the_current_log_key_and_the_tsa_ca(client, sealed_log, tsa_ca_pem):
    response = client.get("/api/v1/log/keys")
    assert response.status_code == 200
    body = response.json()
    (key,) = body["log_keys"]
    parsed = VerifierKey.parse(key["verifier_key"])
    assert key["current"] is True and key["key_id"] == parsed.key_id.hex()
    assert body["origin"] == parsed.name
    assert body["tsa_ca_pem"].encode() == tsa_ca_pem


# --- /api/v1/log/batches/{n} -----------------------------------------------------------------


def test_a_batch_shows_its_header_checkpoint_and_anchor(client, sealed_log):
    response = client.get("/api/v1/log/batches/2")
    assert response.status_code == 200
    body = response.json()
    header_bytes = base64.b64decode(body["header_b64"])
    assert hashlib.sha256(header_bytes).hexdigest() == body["header_hash"]
    assert json.loads(header_bytes) == body["header"]
    assert body["header"]["number"] == body["number"] == 2
    assert body["header"]["prev_tree_size"] == body["prev_tree_size"] == 5
    assert body["header"]["tree_size"] == body["tree_size"] == 305
    first = client.get("/api/v1/log/batches/1").json()
    assert body["header"]["prev_header_hash"] == first["header_hash"]
    keys, _ = pins(client)
    checkpoint = checkpoint_open(body["checkpoint"], keys)
    assert checkpoint.root.hex() == body["root"] == body["header"]["root"]
    assert checkpoint.header_hash.hex() == body["header_hash"]
    assert [(a["type"], a["evidence"]["tsa"]) for a in body["anchors"]] == [("rfc3161", "builtin")]
    assert base64.b64decode(body["anchors"][0]["evidence"]["tsr_b64"])


@pytest.mark.parametrize("number", [0, 2, 10**12])
def test_an_unknown_batch_is_a_404_json_error(client, small_log, number):
    assert_error(client.get(f"/api/v1/log/batches/{number}"), 404)


# --- /api/v1/entries/{id}/receipt ------------------------------------------------------------


def test_a_receipt_from_the_api_verifies_with_the_keys_page_pins(client, sealed_log):
    keys, tsa_ca = pins(client)
    for entry in (sealed_log[0], sealed_log[4], sealed_log[5], sealed_log[-1]):
        response = client.get(f"/api/v1/entries/{entry.uuid}/receipt")
        assert response.status_code == 200
        assert response["Content-Type"].startswith("application/json")
        report = receipt_verify(response.json(), keys=keys, tsa_ca_pem=tsa_ca)
        assert report.ok, report.steps
        assert [step.name for step in report.steps][-1] == "anchor[0]"


def test_a_receipt_asked_for_as_the_receipt_media_type_is_served_as_it(client, sealed_log):
    entry = sealed_log[7]
    response = client.get(f"/api/v1/entries/{entry.uuid}/receipt", HTTP_ACCEPT=RECEIPT_MEDIA_TYPE)
    assert response.status_code == 200
    assert response["Content-Type"].startswith(RECEIPT_MEDIA_TYPE)
    keys, tsa_ca = pins(client)
    assert receipt_verify(json.loads(response.content), keys=keys, tsa_ca_pem=tsa_ca).ok


def tlog_proof_parse(text: str) -> tuple[bytes, int, list[bytes], str]:
    """(extra, index, hashes, checkpoint note) of a C2SP tlog-proof."""
    proof_block, separator, checkpoint = text.partition("\n\n")
    assert separator, "no blank line before the checkpoint"
    lines = proof_block.split("\n")
    assert lines[0] == TLOG_PROOF_HEADER
    assert lines[1].startswith("extra ") and lines[2].startswith("index ")
    extra = base64.b64decode(lines[1].removeprefix("extra "), validate=True)
    index_text = lines[2].removeprefix("index ")
    assert re.fullmatch(r"0|[1-9][0-9]*", index_text)
    hashes = [base64.b64decode(line, validate=True) for line in lines[3:]]
    return extra, int(index_text), hashes, checkpoint


def test_a_receipt_exported_as_tlog_proof_proves_the_entry_in_its_checkpoint(client, sealed_log):
    keys, _ = pins(client)
    for position in (3, 200):
        entry = sealed_log[position]
        response = client.get(f"/api/v1/entries/{entry.uuid}/receipt?format=tlog-proof")
        assert response.status_code == 200, response.content
        assert response["Content-Type"].startswith("text/plain")
        extra, index, hashes, note = tlog_proof_parse(response.content.decode())
        assert extra == bytes(entry.canonical)
        assert index == position
        checkpoint = checkpoint_open(note, keys)
        merkle.verify_inclusion(
            index, checkpoint.tree_size, merkle.leaf_hash(extra), hashes, checkpoint.root
        )


def test_a_pending_entry_has_a_receipt_without_proof(client, small_log):
    (pending,) = append(1, start=1000)
    response = client.get(f"/api/v1/entries/{pending.uuid}/receipt")
    assert response.status_code == 200
    receipt = response.json()
    assert receipt["proof"] is None and receipt["checkpoint"] is None and receipt["batch"] is None
    keys, _ = pins(client)
    report = receipt_verify(receipt, keys=keys)
    assert report.pending and report.failed is None, report.steps


def test_a_pending_entry_has_no_tlog_proof_and_the_404_says_why(client, small_log):
    (pending,) = append(1, start=1000)
    response = client.get(f"/api/v1/entries/{pending.uuid}/receipt?format=tlog-proof")
    error = assert_error(response, 404)
    assert "not sealed" in error["message"], error


def test_an_unknown_entry_has_no_tlog_proof_and_the_404_names_it(client, small_log):
    unknown = uuid.uuid4()
    response = client.get(f"/api/v1/entries/{unknown}/receipt?format=tlog-proof")
    error = assert_error(response, 404)
    assert str(unknown) in error["message"], error


@pytest.mark.parametrize(
    "entry_id",
    [
        pytest.param(str(uuid.uuid4()), id="unknown uuid"),
        pytest.param("not-a-uuid", id="words"),
        pytest.param("1", id="a seq"),
        pytest.param("0" * 40, id="too long"),
        pytest.param("%F0%9F%92%A5", id="emoji"),
    ],
)
def test_an_unknown_or_malformed_entry_id_is_a_404_json_error(client, small_log, entry_id):
    error = assert_error(client.get(f"/api/v1/entries/{entry_id}/receipt"), 404)
    assert "no entry" in error["message"], error


# --- /api/v1/log/proof/inclusion -------------------------------------------------------------


def test_an_inclusion_proof_verifies_against_the_checkpoint_of_that_size(client, sealed_log):
    keys, _ = pins(client)
    roots = {
        size: checkpoint_open(
            client.get(f"/api/v1/log/batches/{number}").json()["checkpoint"], keys
        ).root
        for number, size in ((1, 5), (2, 305))
    }
    for position, tree_size in ((0, 5), (4, 5), (0, 305), (256, 305), (304, 305)):
        leaf_hash = bytes(sealed_log[position].leaf_hash)
        response = client.get(
            "/api/v1/log/proof/inclusion", {"leaf_hash": leaf_hash.hex(), "tree_size": tree_size}
        )
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["leaf_index"] == position and body["tree_size"] == tree_size
        proof = [bytes.fromhex(step) for step in body["hashes"]]
        merkle.verify_inclusion(position, tree_size, leaf_hash, proof, roots[tree_size])


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"tree_size": 5}, "leaf_hash"),
        ({"leaf_hash": "zz" * 32, "tree_size": 5}, "leaf_hash"),
        ({"leaf_hash": "AB" * 32, "tree_size": 5}, "leaf_hash"),
        ({"leaf_hash": "ab" * 31, "tree_size": 5}, "leaf_hash"),
        ({"leaf_hash": "ab" * 32}, "tree_size"),
        ({"leaf_hash": "ab" * 32, "tree_size": "five"}, "tree_size"),
        ({"leaf_hash": "ab" * 32, "tree_size": 0}, "tree_size"),
        ({"leaf_hash": "ab" * 32, "tree_size": -1}, "tree_size"),
    ],
    ids=[
        "no leaf_hash",
        "leaf_hash not hex",
        "leaf_hash upper case",
        "leaf_hash short",
        "no tree_size",
        "tree_size not a number",
        "tree_size zero",
        "tree_size negative",
    ],
)
def test_a_bad_inclusion_query_is_a_400_naming_the_field(client, small_log, query, field):
    assert_error(client.get("/api/v1/log/proof/inclusion", query), 400, field)


def test_an_inclusion_proof_beyond_the_log_or_of_an_unknown_leaf_is_a_404(client, sealed_log):
    known = bytes(sealed_log[0].leaf_hash).hex()
    later = bytes(sealed_log[100].leaf_hash).hex()
    (pending,) = append(1, start=1000)
    for query in (
        {"leaf_hash": known, "tree_size": 306},  # larger than the log
        {"leaf_hash": "ab" * 32, "tree_size": 305},  # no such leaf
        {"leaf_hash": later, "tree_size": 5},  # the leaf came after that size
        {"leaf_hash": bytes(pending.leaf_hash).hex(), "tree_size": 305},  # not sealed yet
    ):
        assert_error(client.get("/api/v1/log/proof/inclusion", query), 404)


# --- /api/v1/log/proof/consistency -----------------------------------------------------------


def test_a_consistency_proof_verifies_between_the_two_checkpoints(client, sealed_log):
    keys, _ = pins(client)
    old = checkpoint_open(client.get("/api/v1/log/batches/1").json()["checkpoint"], keys)
    new = checkpoint_open(client.get("/api/v1/log/checkpoint").content.decode(), keys)
    response = client.get("/api/v1/log/proof/consistency", {"from": 5, "to": 305})
    assert response.status_code == 200, response.content
    proof = [bytes.fromhex(step) for step in response.json()["hashes"]]
    merkle.verify_consistency(old.tree_size, new.tree_size, old.root, new.root, proof)
    # Between sizes that no checkpoint names too: the proof leads from the old root to the new.
    leaves = [bytes(e.leaf_hash) for e in sealed_log]
    response = client.get("/api/v1/log/proof/consistency", {"from": 77, "to": 300})
    proof = [bytes.fromhex(step) for step in response.json()["hashes"]]
    merkle.verify_consistency(
        77, 300, merkle.root_from_leaves(leaves[:77]), merkle.root_from_leaves(leaves[:300]), proof
    )


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"to": 5}, "from"),
        ({"from": "x", "to": 5}, "from"),
        ({"from": 0, "to": 5}, "from"),
        ({"from": 5}, "to"),
        ({"from": 5, "to": "1e3"}, "to"),
    ],
    ids=["no from", "from not a number", "from zero", "no to", "to not an integer"],
)
def test_a_bad_consistency_query_is_a_400_naming_the_field(client, small_log, query, field):
    assert_error(client.get("/api/v1/log/proof/consistency", query), 400, field)


@pytest.mark.parametrize(
    "query", [{"from": 5, "to": 6}, {"from": 6, "to": 400}], ids=["to beyond", "both beyond"]
)
def test_a_consistency_proof_beyond_the_log_is_a_404(client, small_log, query):
    assert_error(client.get("/api/v1/log/proof/consistency", query), 404)


def test_a_consistency_proof_from_a_larger_to_a_smaller_size_is_refused(client, small_log):
    response = client.get("/api/v1/log/proof/consistency", {"from": 5, "to": 1})
    assert 400 <= response.status_code < 500
    assert_error(response, response.status_code)


# --- /api/schema/ and /api/docs/ -------------------------------------------------------------


def test_the_openapi_schema_validates_without_warnings(tmp_path: Path):
    schema_file = tmp_path / "schema.yaml"
    call_command(
        "spectacular", validate=True, fail_on_warn=True, file=str(schema_file), stdout=io.StringIO()
    )
    assert "openapi: 3." in schema_file.read_text()


def test_the_served_schema_describes_every_log_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert {
        "/api/v1/log/checkpoint",
        "/api/v1/log/keys",
        "/api/v1/log/batches/{number}",
        "/api/v1/log/proof/inclusion",
        "/api/v1/log/proof/consistency",
        "/api/v1/entries/{entry_id}/receipt",
    } <= set(schema["paths"])


def test_the_api_docs_serve_swagger_ui_from_the_sidecar_with_no_outside_url(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "SwaggerUIBundle" in html
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert assets, html
    outside = [url for url in assets + re.findall(r"https?://[^\s\"'<>]+", html) if "//" in url]
    assert not outside, f"the docs page loads from outside: {outside}"
    bundles = [url for url in assets if url.endswith("swagger-ui-bundle.js")]
    assert bundles and all("drf_spectacular_sidecar" in url for url in bundles), assets
    for url in assets:
        if "drf_spectacular_sidecar" in url:
            path = url.split("/static/", 1)[1]
            assert finders.find(path), f"{path} is not among the static files"
