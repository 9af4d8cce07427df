"""Veridict's own TSA over HTTP: RFC 3161 queries in, DER replies out, rate-limited, no CSRF."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from rfc3161_client import (
    HashAlgorithm,
    PKIStatus,
    TimestampRequestBuilder,
    decode_timestamp_response,
)
from veridict_verify.timestamp import timestamp_verify

# The rate limit counts in the cache, which is the database unless REDIS_URL is set.
pytestmark = pytest.mark.django_db

QUERY = "application/timestamp-query"
REPLY = "application/timestamp-reply"
OPENSSL = "/usr/bin/openssl"


def query_for(message: bytes):  # type: ignore[no-untyped-def]
    return (
        TimestampRequestBuilder()
        .data(message)
        .hash_algorithm(HashAlgorithm.SHA256)
        .cert_request(cert_request=True)
        .build()
    )


def client_address() -> str:
    """A documentation address (RFC 3849) of its own, so that no other test or run shares its
    quota (with REDIS_URL the counts outlive the test's transaction)."""
    return f"2001:db8::{secrets.token_hex(2)}:{secrets.token_hex(2)}:{secrets.token_hex(2)}"


@pytest.fixture
def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)


def test_a_query_gets_a_reply_that_verifies_against_the_published_ca(csrf_client):
    message = b"a checkpoint of another log\n"
    query = query_for(message)
    response = csrf_client.post(
        reverse("tsa"),
        query.as_bytes(),
        content_type=QUERY,
        HTTP_ACCEPT=REPLY,
        REMOTE_ADDR=client_address(),
    )
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == REPLY
    ca_pem = csrf_client.get(reverse("tsa-ca")).content
    timestamp_verify(response.content, message=message, ca_pem=ca_pem)
    assert decode_timestamp_response(response.content).tst_info.nonce == query.nonce


def test_openssl_asks_and_verifies_a_time_stamp_with_the_published_ca(client, tmp_path: Path):
    (tmp_path / "body.txt").write_bytes(b"anything worth time-stamping\n")
    query = subprocess.run(
        [OPENSSL, "ts", "-query", "-data", "body.txt", "-sha256", "-cert"],
        capture_output=True,
        check=True,
        cwd=tmp_path,
    ).stdout
    response = client.post(reverse("tsa"), query, content_type=QUERY, REMOTE_ADDR=client_address())
    (tmp_path / "reply.tsr").write_bytes(response.content)
    (tmp_path / "ca.pem").write_bytes(client.get(reverse("tsa-ca")).content)
    verified = subprocess.run(
        [OPENSSL, "ts", "-verify", "-data", "body.txt", "-in", "reply.tsr", "-CAfile", "ca.pem"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert "Verification: OK" in verified.stdout, verified.stderr


def test_a_body_that_is_not_a_query_gets_a_rejection_reply(client):
    response = client.post(
        reverse("tsa"), b"\x30\x03garbage", content_type=QUERY, REMOTE_ADDR=client_address()
    )
    assert response.status_code == 200
    reply = decode_timestamp_response(response.content)
    assert reply.status == PKIStatus.REJECTION


def assert_error(response, status: int, code: str, field: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert field in error["fields"] or field == ""
    return error["message"]


def test_a_query_sent_as_another_media_type_is_a_415_that_names_the_body(client):
    response = client.post(
        reverse("tsa"),
        query_for(b"x").as_bytes(),
        content_type="application/octet-stream",
        HTTP_ACCEPT=REPLY,
        REMOTE_ADDR=client_address(),
    )
    message = assert_error(response, 415, "unsupported_media_type", "body")
    assert QUERY in message


def test_a_body_far_larger_than_any_query_is_a_413(client):
    response = client.post(
        reverse("tsa"), b"\x00" * 5000, content_type=QUERY, REMOTE_ADDR=client_address()
    )
    assert_error(response, 413, "too_large", "body")


def test_past_the_rate_limit_the_tsa_answers_429_with_retry_after(client, settings):
    settings.TSA_HTTP_RATE = "2/min"
    address = client_address()
    query = query_for(b"x").as_bytes()
    answers = [
        client.post(reverse("tsa"), query, content_type=QUERY, REMOTE_ADDR=address)
        for _ in range(3)
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 429]
    assert_error(answers[2], 429, "throttled", "")
    assert 0 < int(answers[2]["Retry-After"]) <= 60
    other = client.post(reverse("tsa"), query, content_type=QUERY, REMOTE_ADDR=client_address())
    assert other.status_code == 200, "the limit is per client address"


def test_get_on_the_tsa_is_a_405_json_error(client):
    assert_error(client.get(reverse("tsa")), 405, "method_not_allowed", "")


def test_the_ca_certificate_is_served_as_pem(client, tsa_ca_pem):
    response = client.get(reverse("tsa-ca"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    assert response.content == tsa_ca_pem


def test_an_instance_without_a_tsa_answers_503_not_500(client, settings, tmp_path):
    settings.TSA_KEY_FILE = tmp_path / "none.pem"
    response = client.post(
        reverse("tsa"), query_for(b"x").as_bytes(), content_type=QUERY, REMOTE_ADDR=client_address()
    )
    assert_error(response, 503, "tsa_unavailable", "")
