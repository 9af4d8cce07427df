"""Keys and trust, and "check it yourself": keys, the TSA CA, independence, the verifier download,
the exact commands and the SRI hashes of every script."""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from django.conf import settings

from timestamping import keys
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db
STATIC = Path(settings.BASE_DIR) / "static"


def test_the_keys_page_lists_current_and_past_keys_and_the_tsa_ca(client, seal, settings):
    entry_append(kind="test", envelope={"n": 1})
    seal()
    page = client.get("/keys/").content.decode()
    assert str(keys.verifier_key()) in page
    assert "<strong>current</strong>" in page
    ca = client.get("/tsa/ca.pem").content.decode()
    assert ca.strip().splitlines()[1] in page
    assert 'href="/tsa/ca.pem"' in page


def test_the_keys_page_says_which_anchors_are_independent(client, db, settings, ledger_keys):
    settings.ANCHOR_BACKENDS = [
        {
            "name": "freetsa",
            "type": "rfc3161",
            "url": "https://freetsa.example/tsr",
            "interval": 300,
            "roots": [str(ledger_keys["TSA_CA_CERT_FILE"])],
        },
        {
            "name": "sepolia",
            "type": "ethereum",
            "rpc_url": "https://rpc.example/v3/SECRET",
            "chain_id": 11155111,
            "key_env": "UNUSED_KEY",
            "interval": 600,
        },
    ]
    page = client.get("/keys/").content.decode()

    def row(name: str) -> str:
        return page[page.index(f'<li data-source="{name}">') :].split("</li>")[0]

    assert "Independent of us: no." in row("builtin")
    assert "Independent of us: yes." in row("freetsa")
    assert "https://freetsa.example/tsr" in row("freetsa")
    assert "Independent of us: yes." in row("sepolia") and "chain id 11155111" in row("sepolia")
    assert "SECRET" not in page  # a provider's RPC path holds its API key


def test_check_yourself_gives_the_exact_commands_with_the_pinned_key(client, seal):
    entry_append(kind="test", envelope={"n": 1})
    batch = seal()
    page = client.get("/keys/check-yourself").content.decode()
    assert f"--key '{keys.verifier_key()}'" in page
    assert "--tsa-ca tsa-ca.pem" in page
    assert "openssl ts -verify -data body.txt -in anchor.tsr -CAfile tsa-ca.pem" in page
    assert f"/log/batches/{batch.number}/body.txt" in page


def test_check_yourself_shows_how_to_check_an_ai_systems_evidence_package(client, seal):
    entry_append(kind="test", envelope={"n": 1})
    seal()
    page = client.get("/keys/check-yourself").content.decode()
    section = page[page.index('id="evidence"') :]
    assert "evidence_export --system SLUG" in section
    assert "/api/v1/systems/SLUG/evidence?from=2026-01-01&amp;to=2026-03-31" in section
    assert f"--key '{keys.verifier_key()}'" in section
    assert "--compare audit.json" in section


def test_the_verifier_download_is_the_source_with_the_sha256_the_page_shows(client, db):
    page = client.get("/keys/check-yourself").content.decode()
    href = page[page.index('href="/keys/veridict_verify-') + 6 :].split('"')[0]
    download = client.get(href)
    assert download.status_code == 200
    assert hashlib.sha256(download.content).hexdigest() in page
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
        names = archive.getnames()
        prefix = names[0].split("/")[0]
        assert f"{prefix}/pyproject.toml" in names
        receipt_py = archive.extractfile(f"{prefix}/veridict_verify/receipt.py").read()
    source = Path(settings.BASE_DIR) / "verifier" / "veridict_verify" / "receipt.py"
    assert receipt_py == source.read_bytes()
    # Reproducible: the same sources give the same bytes.
    assert client.get(href).content == download.content


def test_an_old_verifier_file_name_redirects_to_the_current_one(client, db):
    response = client.get("/keys/veridict_verify-0.0.1.tar.gz")
    assert response.status_code == 302
    assert response["Location"].startswith("/keys/veridict_verify-")


def test_every_served_script_is_listed_with_its_sha384_integrity(client, db):
    page = client.get("/keys/check-yourself").content.decode()
    scripts = sorted(p.relative_to(STATIC).as_posix() for p in STATIC.rglob("*.js"))
    assert "portal/document.js" in scripts
    for path in scripts:
        digest = hashlib.sha384((STATIC / path).read_bytes()).digest()
        integrity = f"sha384-{base64.b64encode(digest).decode()}"
        assert f'<code>/static/{path}</code><br><code class="digest">{integrity}</code>' in page
