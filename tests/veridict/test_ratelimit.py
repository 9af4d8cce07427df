"""Rate limits: the shared fixed window, forged X-Forwarded-For, and a cache that is down."""

from __future__ import annotations

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse
from rest_framework.test import APIClient
from rfc3161_client import HashAlgorithm, TimestampRequestBuilder

from veridict.ratelimit import parse_rate, rate_limit_hit

pytestmark = pytest.mark.django_db

# Nothing listens on the discard port; the timeouts keep a filtered port from stalling the test.
CLOSED_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:9/0",
        "OPTIONS": {"socket_connect_timeout": 0.2, "socket_timeout": 0.2},
    }
}


def fresh_address() -> str:
    """An address of its own: with REDIS_URL the counts outlive the test's transaction."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


def tsa_query() -> bytes:
    builder = TimestampRequestBuilder().data(b"x").hash_algorithm(HashAlgorithm.SHA256)
    return builder.build().as_bytes()


@pytest.fixture
def low_lookup_rate(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "document_lookup": "2/min",
        },
    }


def lookup(**extra: str) -> int:
    return APIClient().get(f"/api/v1/documents/{'ab' * 32}", **extra).status_code


def time_stamp(**extra: str) -> int:
    response = APIClient().generic(
        "POST", reverse("tsa"), tsa_query(), "application/timestamp-query", **extra
    )
    return response.status_code


@pytest.mark.parametrize(
    ("rate", "expected"),
    [("60/min", (60, 60)), ("3/h", (3, 3600)), ("1/day", (1, 86400)), (" 5 / s ", (5, 1))],
)
def test_rates_are_a_count_per_period(rate, expected):
    assert parse_rate(rate) == expected


@pytest.mark.parametrize("rate", ["", "60", "60/fortnight", "-1/min", "many/min", "60/MIN"])
def test_a_rate_that_is_not_one_is_a_configuration_error(rate):
    with pytest.raises(ImproperlyConfigured):
        parse_rate(rate)


def test_past_the_rate_a_key_is_told_how_long_to_wait_and_other_keys_are_not():
    key = fresh_address()
    answers = [rate_limit_hit(scope="test", key=key, rate="2/min") for _ in range(3)]
    assert answers[:2] == [None, None]
    assert answers[2] is not None and 1 <= answers[2] <= 60
    assert rate_limit_hit(scope="test", key=fresh_address(), rate="2/min") is None
    assert rate_limit_hit(scope="other", key=key, rate="2/min") is None


def test_a_cache_that_is_down_lets_requests_through(settings):
    settings.CACHES = CLOSED_REDIS
    assert [rate_limit_hit(scope="test", key="k", rate="1/min") for _ in range(3)] == [None] * 3


def test_a_forged_forwarded_for_does_not_reset_the_document_lookup_limit(low_lookup_rate):
    address = fresh_address()
    answers = [lookup(REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=fresh_address()) for _ in range(3)]
    assert answers == [404, 404, 429]


def test_a_forged_forwarded_for_does_not_reset_the_tsa_limit(settings):
    settings.TSA_HTTP_RATE = "2/min"
    address = fresh_address()
    answers = [
        time_stamp(REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=fresh_address()) for _ in range(3)
    ]
    assert answers == [200, 200, 429]


def test_behind_one_proxy_the_throttles_count_the_address_it_saw(low_lookup_rate, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    proxy, client, other = fresh_address(), fresh_address(), fresh_address()

    def through_proxy(seen: str) -> int:
        # Left of what our proxy appended is the client's own, forgeable, text.
        return lookup(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR=f"{fresh_address()}, {seen}")

    assert [through_proxy(client) for _ in range(3)] == [404, 404, 429]
    assert through_proxy(other) == 404


def test_document_lookups_go_on_while_the_cache_is_down(low_lookup_rate, settings):
    settings.CACHES = CLOSED_REDIS
    address = fresh_address()
    assert [lookup(REMOTE_ADDR=address) for _ in range(4)] == [404] * 4


def test_time_stamps_go_on_while_the_cache_is_down(settings):
    settings.TSA_HTTP_RATE = "1/min"
    settings.CACHES = CLOSED_REDIS
    address = fresh_address()
    assert [time_stamp(REMOTE_ADDR=address) for _ in range(3)] == [200] * 3
