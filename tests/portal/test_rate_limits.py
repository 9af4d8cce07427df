"""Lookups are rate-limited per client address: 429 with Retry-After, as a page or as JSON."""

from __future__ import annotations

import uuid

import pytest

pytestmark = pytest.mark.django_db


def fresh_address() -> str:
    """An address of its own: with REDIS_URL the counts outlive the test's transaction."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


@pytest.fixture
def low_rates(settings):
    settings.PORTAL_RATES = {"lookup": "2/min", "entry": "2/min"}


def test_the_document_page_answers_429_with_retry_after_past_the_rate(client, low_rates):
    address = fresh_address()
    answers = [client.get("/documents/" + "ab" * 32, REMOTE_ADDR=address) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [404, 404, 429]
    assert 0 < int(answers[-1]["Retry-After"]) <= 60
    assert "Too many requests" in answers[-1].content.decode()


def test_the_limit_is_per_address(client, low_rates):
    first, second = fresh_address(), fresh_address()
    for _ in range(2):
        client.get("/documents/" + "ab" * 32, REMOTE_ADDR=first)
    assert client.get("/documents/" + "ab" * 32, REMOTE_ADDR=first).status_code == 429
    assert client.get("/documents/" + "ab" * 32, REMOTE_ADDR=second).status_code == 404


def test_entry_pages_are_limited_and_answer_json_to_json_clients(client, low_rates):
    address = fresh_address()
    missing = f"/log/entries/{uuid.uuid4()}"
    for _ in range(2):
        assert client.get(missing, REMOTE_ADDR=address).status_code == 404
    response = client.get(missing, REMOTE_ADDR=address, HTTP_ACCEPT="application/json")
    assert response.status_code == 429
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == "throttled"
    assert int(response["Retry-After"]) > 0


def test_pages_that_are_not_lookups_are_not_limited(client, low_rates):
    address = fresh_address()
    assert {client.get("/log/", REMOTE_ADDR=address).status_code for _ in range(5)} == {200}


def test_behind_our_proxy_the_limit_counts_the_forwarded_address(client, low_rates, settings):
    settings.TRUSTED_PROXY_COUNT = 1
    proxy, first, second = fresh_address(), fresh_address(), fresh_address()

    def look(address: str) -> int:
        return client.get(
            "/documents/" + "ab" * 32, REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=address
        ).status_code

    assert [look(first) for _ in range(3)] == [404, 404, 429]
    assert look(second) == 404
