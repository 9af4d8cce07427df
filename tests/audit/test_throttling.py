"""The per-key fixed-window throttle, on the database cache and on a real Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
from django.core.cache import caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache

from audit.models import SystemAPIKey
from audit.throttling import SystemKeyRateThrottle
from tests.conftest import require_service

REDIS = ("127.0.0.1", 6379)


def throttle_on(cache: BaseCache, rate: str, now: list[float]) -> SystemKeyRateThrottle:
    throttle = SystemKeyRateThrottle()
    throttle.rate = rate
    throttle.num_requests, throttle.duration = throttle.parse_rate(rate)
    throttle.cache = cache
    throttle.timer = lambda: now[0]  # type: ignore[method-assign]
    return throttle


def request_with_key(prefix: str) -> SimpleNamespace:
    return SimpleNamespace(auth=SystemAPIKey(prefix=prefix))


def allowed(cache: BaseCache, rate: str, now: list[float], prefix: str, count: int) -> list[bool]:
    """What `count` requests of one key are told, each by a new throttle as DRF makes one."""
    return [
        throttle_on(cache, rate, now).allow_request(request_with_key(prefix), None)
        for _ in range(count)
    ]


@pytest.fixture
def redis_cache() -> Iterator[RedisCache]:
    require_service("Redis", *REDIS)
    cache = RedisCache(f"redis://{REDIS[0]}:{REDIS[1]}/9", {})
    yield cache
    cache.close()


@pytest.mark.django_db
def test_the_database_cache_counts_a_window_and_the_next_one_starts_afresh() -> None:
    prefix, now = uuid.uuid4().hex[:8], [1_000_020.0]  # a minute starts
    assert allowed(caches["default"], "3/min", now, prefix, 4) == [True, True, True, False]
    now[0] += 59.9  # still this minute
    assert allowed(caches["default"], "3/min", now, prefix, 1) == [False]
    now[0] += 0.1  # the next one
    assert allowed(caches["default"], "3/min", now, prefix, 1) == [True]


def test_redis_counts_with_one_counter_per_key_and_window_that_expires(redis_cache) -> None:
    prefix, now = uuid.uuid4().hex[:8], [1_000_020.0]  # a minute starts
    assert allowed(redis_cache, "3/min", now, prefix, 4) == [True, True, True, False]
    assert allowed(redis_cache, "3/min", now, uuid.uuid4().hex[:8], 1) == [True]  # other key
    name = redis_cache.make_and_validate_key(f"throttle_ai_system_{prefix}:{1_000_020 // 60}")
    client = redis_cache._cache.get_client(name)
    assert int(client.get(name)) == 4
    assert 0 < client.ttl(name) <= 60
    now[0] += 60
    assert allowed(redis_cache, "3/min", now, prefix, 1) == [True]


def test_retry_after_is_the_time_left_in_the_window(redis_cache) -> None:
    prefix, now = uuid.uuid4().hex[:8], [1_000_040.0]  # 20 s into a minute
    throttles = [throttle_on(redis_cache, "1/min", now) for _ in range(2)]
    assert throttles[0].allow_request(request_with_key(prefix), None)
    assert not throttles[1].allow_request(request_with_key(prefix), None)
    assert throttles[1].wait() == pytest.approx(40.0)


def test_an_unreachable_redis_lets_requests_through() -> None:
    unreachable = RedisCache("redis://127.0.0.1:9/0", {"socket_connect_timeout": 0.2})
    assert allowed(unreachable, "1/min", [1_000_000.0], "k", 3) == [True, True, True]


def test_requests_without_a_system_key_are_not_throttled() -> None:
    throttle = throttle_on(caches["default"], "1/min", [0.0])
    for _ in range(3):
        assert throttle.allow_request(SimpleNamespace(auth=None), None)
