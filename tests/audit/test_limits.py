"""Limits of the ingestion API: the rate per key, body size and type, and the one error shape."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.core.handlers.wsgi import WSGIHandler
from django.test import RequestFactory
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from rest_framework.settings import api_settings
from rest_framework.test import APIClient

from audit.models import Decision, SystemAPIKey
from audit.services.systems import api_key_create
from audit.throttling import SystemKeyRateThrottle
from tests.audit.conftest import AISystemFactory
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

RATE = 3
# Endpoints that take a JSON body from an AI system; {decision} is filled in per test.
JSON_ENDPOINTS = [
    "/api/v1/decisions",
    "/api/v1/decisions/{decision}/outcome",
    "/api/v1/model-versions",
]
# Hypothesis runs every example in the test's one transaction, so they share the database.
GARBAGE = hypothesis_settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_error_shape(response: Any, status: int | None = None) -> dict[str, Any]:
    """The API's one error body, whatever went wrong: {"error": {"code","message","fields"}}."""
    if status is not None:
        assert response.status_code == status, response.content
    assert 400 <= response.status_code < 500, response.content
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = json.loads(response.content)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"code", "message", "fields"}, error
    assert isinstance(error["code"], str) and error["code"], error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["fields"], dict), error
    return error


def client_with_key(system: Any) -> tuple[APIClient, str]:
    key = api_key_create(system=system, name="limits")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client, key


def throttle_cache_key(key: str) -> str:
    prefix = key.partition(".")[0]
    return SystemKeyRateThrottle.cache_format % {"scope": "ai_system", "ident": prefix}


@pytest.fixture
def low_rate(settings, monkeypatch) -> Iterator[list[str]]:
    """RATE requests a minute per key; yields a list to which tests add the keys they make, whose
    request history is removed from the cache afterwards."""
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"ai_system": f"{RATE}/min"},
    }
    # SimpleRateThrottle copies DEFAULT_THROTTLE_RATES into a class attribute when DRF is first
    # imported: changing the setting reloads api_settings but not that copy.
    monkeypatch.setattr(
        SystemKeyRateThrottle, "THROTTLE_RATES", api_settings.DEFAULT_THROTTLE_RATES
    )
    keys: list[str] = []
    yield keys
    # Only these keys' entries: with REDIS_URL the cache is a Redis that others share, which
    # cache.clear() would flush.
    cache.delete_many([throttle_cache_key(key) for key in keys])


@pytest.fixture
def decision_id(api_client, decision_request) -> str:
    response = api_client.post("/api/v1/decisions", decision_request(), format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_past_its_rate_a_key_gets_429_with_retry_after_and_other_keys_are_served(
    low_rate, ai_system
):
    client, key = client_with_key(ai_system)
    other, other_key = client_with_key(AISystemFactory())
    low_rate += [key, other_key]
    for _ in range(RATE):
        assert client.get("/api/v1/decisions").status_code == 200
    refused = client.get("/api/v1/decisions")
    error = assert_error_shape(refused, 429)
    assert error["code"] == "throttled"
    assert 0 < int(refused["Retry-After"]) <= 60
    assert other.get("/api/v1/decisions").status_code == 200


def test_the_rate_is_per_key_not_per_system(low_rate, ai_system):
    first, first_key = client_with_key(ai_system)
    second, second_key = client_with_key(ai_system)
    low_rate += [first_key, second_key]
    for _ in range(RATE):
        first.get("/api/v1/decisions")
    assert first.get("/api/v1/decisions").status_code == 429
    assert second.get("/api/v1/decisions").status_code == 200


def test_a_throttled_post_records_nothing(low_rate, ai_system, decision_request):
    client, key = client_with_key(ai_system)
    low_rate.append(key)
    for _ in range(RATE):
        client.get("/api/v1/decisions")
    refused = client.post("/api/v1/decisions", decision_request(), format="json")
    assert_error_shape(refused, 429)
    assert not Decision.objects.exists() and not Entry.objects.exists()


def test_a_throttled_key_is_served_again_once_the_minute_has_passed(
    low_rate, ai_system, monkeypatch
):
    client, key = client_with_key(ai_system)
    low_rate.append(key)
    now = [1_000_000.0]
    monkeypatch.setattr(SystemKeyRateThrottle, "timer", lambda self: now[0])
    for _ in range(RATE):
        client.get("/api/v1/decisions")
    assert client.get("/api/v1/decisions").status_code == 429
    now[0] += 61
    assert client.get("/api/v1/decisions").status_code == 200


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
def test_an_over_size_body_is_a_413_naming_the_limit(api_client, decision_id, settings, path):
    settings.API_MAX_BODY_BYTES = 2048
    body = json.dumps({"padding": "x" * 4096})
    response = api_client.post(
        path.format(decision=decision_id), body, content_type="application/json"
    )
    error = assert_error_shape(response, 413)
    assert error["code"] == "payload_too_large"
    assert "2048" in error["message"]


def test_a_body_just_under_the_limit_is_read(api_client, decision_request, settings):
    body = json.dumps(decision_request())
    settings.API_MAX_BODY_BYTES = len(body.encode())
    response = api_client.post("/api/v1/decisions", body, content_type="application/json")
    assert response.status_code == 201, response.content


@pytest.mark.parametrize("path", JSON_ENDPOINTS)
@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "application/x-www-form-urlencoded", "image/png"],
)
def test_a_body_that_is_not_json_is_a_415(
    api_client, decision_id, decision_request, path, content_type
):
    body = json.dumps(decision_request()).encode()
    response = api_client.post(path.format(decision=decision_id), body, content_type=content_type)
    error = assert_error_shape(response, 415)
    assert error["code"] == "unsupported_media_type"
    assert content_type in error["message"]


def test_an_unacceptable_accept_header_is_a_406(api_client):
    response = api_client.get("/api/v1/decisions", HTTP_ACCEPT="text/csv")
    assert_error_shape(response, 406)


@pytest.mark.parametrize(
    ("scenario", "status"),
    [
        ("malformed", 400),
        ("invalid", 400),
        ("no key", 401),
        ("bad key", 401),
        ("revoked key", 401),
        ("unknown decision", 404),
        ("wrong method", 405),
        ("conflict", 409),
    ],
)
def test_every_error_answers_in_the_one_json_shape(
    scenario, status, api_client, ai_system, decision_request
):
    post = {"path": "/api/v1/decisions", "data": decision_request(), "format": "json"}
    client = api_client
    if scenario == "malformed":
        post.update(data=b'{"client_decision_id": ', format=None, content_type="application/json")
    elif scenario == "invalid":
        post.update(data=decision_request(occurred_at="yesterday"))
    elif scenario == "no key":
        client = APIClient()
    elif scenario == "bad key":
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    elif scenario == "revoked key":
        SystemAPIKey.objects.filter(system=ai_system).update(revoked=True)
    elif scenario == "unknown decision":
        post.update(path="/api/v1/decisions/3f1c0ad5-8d4f-4a8e-9d7c-5c1f2f9b8a11/outcome")
    elif scenario == "conflict":
        client.post(**post)
        post.update(data=decision_request(output={"label": "approve"}))
    if scenario == "wrong method":
        response = client.delete("/api/v1/decisions")
    else:
        response = client.post(**post)
    error = assert_error_shape(response, status)
    if scenario == "invalid":
        assert "occurred_at" in error["fields"]
    if status == 401:
        assert response["WWW-Authenticate"] == "Api-Key"


json_values = st.recursive(
    st.none()
    | st.booleans()
    # Beyond ±2^53 as well, and NaN and infinities, which json.dumps writes and I-JSON refuses.
    | st.integers()
    | st.floats()
    # Lone surrogates included: json.dumps escapes them, and they are not Unicode.
    | st.text(st.characters(codec=None)),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@GARBAGE
@given(body=st.binary(max_size=2048), path=st.sampled_from(JSON_ENDPOINTS))
def test_random_bytes_as_a_json_body_are_a_4xx_in_the_error_shape(
    api_client, decision_id, body, path
):
    response = api_client.post(
        path.format(decision=decision_id), body, content_type="application/json"
    )
    assert_error_shape(response)


@GARBAGE
@given(value=json_values, path=st.sampled_from(JSON_ENDPOINTS))
def test_a_random_json_value_as_the_body_is_a_4xx_in_the_error_shape(
    api_client, decision_id, value, path
):
    body = json.dumps(value)
    response = api_client.post(
        path.format(decision=decision_id), body, content_type="application/json"
    )
    assert_error_shape(response)


@GARBAGE
@given(data=st.data(), value=json_values)
def test_a_decision_with_any_field_replaced_by_a_random_value_is_never_a_5xx(
    api_client, decision_request, data, value
):
    request = decision_request()
    field = data.draw(st.sampled_from(sorted(request)), label="field")
    request[field] = value
    response = api_client.post(
        "/api/v1/decisions", json.dumps(request), content_type="application/json"
    )
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert_error_shape(response)


def test_deeply_nested_json_is_a_400_not_a_500(api_client):
    body = b"[" * 100_000 + b"]" * 100_000
    response = api_client.post("/api/v1/decisions", body, content_type="application/json")
    assert_error_shape(response, 400)


def adversarial_body(size: int, depth: int) -> bytes:
    """Nested one level past the limit, then a string of escaped quotes that never ends: the old
    regex pre-checks took time quadratic in it (4.3 s at 32 KB, about an hour at 1 MB)."""
    head = b"[" * (depth + 1) + b'"'
    return head + b'\\"' * ((size - len(head)) // 2)


ADVERSARIAL_SIZES = [64 * 1024, 1024 * 1024, 32 * 1024 * 1024 - 64]
# What the test client and the views cost around the scan on a 32 MB body, with room for a busy
# machine; the quadratic scan took seconds at 64 KB already.
SECONDS = 10


@pytest.mark.parametrize("size", ADVERSARIAL_SIZES)
def test_an_adversarial_body_is_refused_in_linear_time(api_client, size):
    body = adversarial_body(size, depth=256)
    started = time.perf_counter()
    response = api_client.post("/api/v1/decisions", body, content_type="application/json")
    assert time.perf_counter() - started < SECONDS
    assert "nested deeper" in assert_error_shape(response, 400)["message"]


@pytest.mark.parametrize("size", ADVERSARIAL_SIZES)
@pytest.mark.parametrize("depth", [256, 0])
def test_an_adversarial_bulk_array_is_refused_in_linear_time(api_client, size, depth):
    body = adversarial_body(size, depth=depth)
    started = time.perf_counter()
    response = api_client.post("/api/v1/decisions/bulk", body, content_type="application/json")
    assert time.perf_counter() - started < SECONDS
    assert_error_shape(response, 400)


@pytest.mark.parametrize("size", ADVERSARIAL_SIZES)
def test_an_adversarial_ndjson_line_fails_itself_in_linear_time(api_client, size):
    body = adversarial_body(size, depth=64)
    started = time.perf_counter()
    response = api_client.post("/api/v1/decisions/bulk", body, content_type="application/x-ndjson")
    assert time.perf_counter() - started < SECONDS
    assert response.status_code == 200, response.content
    [result] = response.json()["results"]
    assert result["status"] == 400
    assert result["error"]["code"] == "parse_error"
    assert "nested deeper than 64" in result["error"]["message"]


class CountingInput(io.RawIOBase):
    """A WSGI input that counts the bytes a handler reads from it."""

    def __init__(self, body: bytes) -> None:
        self.body = io.BytesIO(body)
        self.taken = 0

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        chunk = self.body.read(size)
        self.taken += len(chunk)
        return chunk

    def readline(self, size: int = -1) -> bytes:  # type: ignore[override]
        line = self.body.readline(size)
        self.taken += len(line)
        return line


def test_a_large_anonymous_form_post_is_refused_before_its_body_is_read():
    # With a CSRF cookie of its own (anyone can send one), the CSRF check reads the form's fields
    # before any view runs: Django refuses a body past DATA_UPLOAD_MAX_MEMORY_SIZE with a 400.
    token = "a" * 32
    body = b"csrfmiddlewaretoken=" + token.encode() + b"&statement=" + b"x" * (20 * 1024 * 1024)
    wsgi_input = CountingInput(body)
    environ = RequestFactory().post("/d/anything").environ | {
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_COOKIE": f"csrftoken={token}",
        "wsgi.input": wsgi_input,
    }
    started: list[str] = []
    b"".join(WSGIHandler()(environ, lambda status, headers: started.append(status)))
    assert started[0].startswith("400"), started
    assert wsgi_input.taken == 0


def test_a_20_mb_json_bulk_post_with_an_api_key_is_recorded(api_client, decision_request):
    records = [
        decision_request(client_decision_id=f"big-{n}", inputs={"scan": "x" * 1024 * 1024})
        for n in range(20)
    ]
    body = json.dumps(records)
    assert len(body) > 20 * 1024 * 1024
    response = api_client.post("/api/v1/decisions/bulk", body, content_type="application/json")
    assert response.status_code == 200, response.content[:500]
    assert response.json()["created"] == 20
