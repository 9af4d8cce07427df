"""Request rate per API key (429 with Retry-After past it)."""

from __future__ import annotations

import functools
from typing import Any

import redis
import structlog
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from audit.models import SystemAPIKey

log = structlog.get_logger(__name__)


class SystemKeyRateThrottle(SimpleRateThrottle):
    """A fixed window per key: one counter per key and window of the rate's period, counted
    with INCR and EXPIRE in one round trip to Redis. DRF's SimpleRateThrottle reads, unpickles,
    rewrites and pickles a list of every request's time in the window instead (over a
    millisecond a request at high rates). The price: up to twice the rate across the boundary
    of two windows."""

    scope = "ai_system"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, SystemAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_end = (window + 1) * self.duration
        # The counts live in the cache (Redis in production). Ingestion must keep answering
        # while Redis is down, so an unreachable cache lets requests through, with a warning.
        try:
            count = self._count(f"{key}:{window}")
        except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
            log.warning("throttle_cache_unavailable", error=str(exc))
            return True
        return count <= self.num_requests

    def _count(self, key: str) -> int:
        """This request's number in its window."""
        cache: BaseCache = self.cache
        if cache is default_cache:  # a proxy, which isinstance cannot see through
            cache = caches[DEFAULT_CACHE_ALIAS]
        if isinstance(cache, RedisCache):
            name = cache.make_and_validate_key(key)
            pipeline = _redis_client(cache).pipeline(transaction=False)
            pipeline.incr(name)
            pipeline.expire(name, self.duration)
            count, _ = pipeline.execute()
            return int(count)
        # Other caches (the database's without REDIS_URL): not atomic between processes, which
        # at worst lets a few requests more through.
        cache.add(key, 0, timeout=self.duration)
        try:
            return cache.incr(key)
        except ValueError:  # expired between the two calls
            cache.set(key, 1, timeout=self.duration)
            return 1

    def wait(self) -> float:
        return self.window_end - self.now


@functools.lru_cache(maxsize=16)
def _redis_client(cache: RedisCache) -> redis.Redis:
    """One client per cache backend: Django makes a new one, with its table of hundreds of
    response callbacks, for every call. It is thread-safe; its connections are the backend's
    pool's."""
    return cache._cache.get_client(write=True)
