"""The receipt-verify page as served: its import map, integrity hashes and the ?entry parameter."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from pathlib import Path

import pytest

from portal import sri

pytestmark = pytest.mark.django_db

STATIC = Path(__file__).resolve().parents[2] / "static"


def test_static_integrity_is_the_sha384_that_openssl_computes() -> None:
    path = "verifier/receipt.js"
    digest = subprocess.run(
        ["openssl", "dgst", "-sha384", "-binary", str(STATIC / path)],
        capture_output=True,
        check=True,
    ).stdout
    assert sri.static_integrity(path) == "sha384-" + base64.b64encode(digest).decode()
    with pytest.raises(FileNotFoundError):
        sri.static_integrity("verifier/no-such-module.js")


def test_the_page_maps_every_vendored_import_and_hashes_every_verifier_file(client) -> None:
    response = client.get("/verify/receipt")
    assert response.status_code == 200
    html = response.content.decode()
    importmap = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html, re.S)[1])
    files = sri.verifier_files()
    assert {f"/static/{path}" for path in files} == set(importmap["integrity"])
    for path in files:
        expected = hashlib.sha384((STATIC / path).read_bytes()).digest()
        assert importmap["integrity"][f"/static/{path}"] == (
            "sha384-" + base64.b64encode(expected).decode()
        )
    # Every bare specifier a vendored module imports is in the map.
    imported = set()
    for path in files:
        source = (STATIC / path).read_text()
        imported |= set(re.findall(r"""from\s*['"]([^'"./][^'"]*)['"]""", source))
    assert imported <= set(importmap["imports"])
    assert re.search(
        r'<script type="module" src="/static/verifier/page/verify_receipt.js" '
        r'integrity="sha384-[A-Za-z0-9+/=]+"></script>',
        html,
    )
    # Every vendored package ships its licence and is listed in the vendor README.
    readme = (STATIC / "vendor" / "README.md").read_text()
    for folder in (STATIC / "vendor").iterdir():
        if folder.is_dir():
            assert (folder / "LICENSE").exists(), folder
            assert f"`{folder.name}/`" in readme
    for path in files:
        if path.startswith("vendor/"):
            digest = hashlib.sha256((STATIC / path).read_bytes()).hexdigest()
            assert f"{digest}  ./{path.removeprefix('vendor/')}" in readme, path


def test_an_entry_parameter_that_is_no_uuid_is_said_plainly(client) -> None:
    response = client.get("/verify/receipt", {"entry": "not-a-uuid"})
    assert response.status_code == 200
    assert "is not an entry id (a UUID)" in response.content.decode()
    response = client.get("/verify/receipt", {"entry": "6f1c1b4e-3d0c-4c55-9f0e-5b8a3b1c2d3e"})
    assert 'data-entry="6f1c1b4e-3d0c-4c55-9f0e-5b8a3b1c2d3e"' in response.content.decode()
