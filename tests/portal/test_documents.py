"""The document lookup pages: found, not found, private, malformed, rate-limited."""

from __future__ import annotations

import hashlib

import pytest

from tests.audit.conftest import AISystemFactory

pytestmark = pytest.mark.django_db


def test_a_registered_document_shows_when_by_whom_in_which_batch_and_where_anchored(
    client, register, seal
):
    document = register(b"minutes of the board, 3 March")
    batch = seal()

    response = client.get(f"/documents/{document.sha256}")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Found: registered 1 time." in page
    assert "CV screener" in page and "cv-screener" in page
    assert f'href="/log/batches/{batch.number}"' in page
    assert f'href="/log/entries/{document.entry.uuid}"' in page
    assert "builtin (our own TSA)" in page
    assert f"/api/v1/entries/{document.entry.uuid}/receipt" in page


def test_a_pending_registration_says_it_is_not_sealed_yet(client, register):
    document = register(b"not sealed")
    page = client.get(f"/documents/{document.sha256}").content.decode()
    assert "not sealed yet" in page


def test_an_unknown_digest_is_reported_not_found_plainly(client, db):
    response = client.get("/documents/" + hashlib.sha256(b"never registered").hexdigest())
    assert response.status_code == 404
    assert "Not found." in response.content.decode()


def test_a_private_document_or_a_private_system_is_not_found(client, register):
    private = register(b"private one", private=True)
    hidden_system = AISystemFactory(is_public=False)
    hidden = register(b"of a private system", system=hidden_system)
    for digest in (private.sha256, hidden.sha256):
        assert client.get(f"/documents/{digest}").status_code == 404


def test_the_digest_form_redirects_to_the_lower_case_digest_page(client, db):
    digest = "AB" * 32
    response = client.get("/documents/", {"sha256": f" {digest} "})
    assert response.status_code == 302
    assert response["Location"] == f"/documents/{digest.lower()}"


def test_the_digest_form_refuses_what_is_not_a_digest_naming_the_problem(client, db):
    response = client.get("/documents/", {"sha256": "abc"})
    assert response.status_code == 400
    assert "64 hexadecimal digits" in response.content.decode()
