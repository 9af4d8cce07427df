"""Fixed-window rate limits counted in Django's cache, letting requests through when it is down:
the counter, the per-address limit of public pages (a decorator) and of public API reads (a DRF
throttle), and DRF's per-key throttle."""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable
from typing import Any

import redis
import structlog
from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache import cache as default_cache
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from veridict.clients import client_ip

log = structlog.get_logger(__name__)

PERIODS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
RATE = re.compile(r"^\s*(\d+)\s*/\s*([a-z]+)\s*$")
# Per client address, for public reads; settings.PORTAL_RATES overrides them. Looking documents
# and entries up is cheap, but must not let one address enumerate the log; a bias report or a
# receipt costs a tenth of a second or more each.
DEFAULT_RATES = {"lookup": "60/min", "entry": "120/min", "bias": "20/min", "receipt": "60/min"}


@functools.lru_cache(maxsize=64)
def parse_rate(rate: str) -> tuple[int, int]:
    """(requests, seconds) from "<n>/<s|sec|m|min|h|hour|d|day>"."""
    match = RATE.match(rate or "")
    if match is None or match.group(2) not in PERIODS:
        raise ImproperlyConfigured(
            f"rate {rate!r} is not <count>/<s|sec|m|min|h|hour|d|day>, e.g. 60/min"
        )
    return int(match.group(1)), PERIODS[match.group(2)]


def rate_limit_hit(*, scope: str, key: str, rate: str) -> int | None:
    """Counts one request of `key` (an address, an id: no spaces) under `scope`; returns the
    seconds until its window ends when that is past `rate`, else None.

    Fixed windows: one counter per key and window, so a burst at a window's edge may get up to
    twice the rate, which is fine for keeping scrapers off, and keeps no history. A cache that
    cannot be reached lets the request through, with a warning: the site must keep answering
    while Redis is down.
    """
    allowed, period = parse_rate(rate)
    now = time.time()
    window = int(now // period)
    try:
        count = cache_count(default_cache, f"rate:{scope}:{key}:{window}", timeout=period + 1)
    except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
        log.warning("rate_limit_cache_unavailable", scope=scope, error=str(exc))
        return None
    if count <= allowed:
        return None
    return max(1, math.ceil((window + 1) * period - now))


def cache_count(cache: BaseCache, key: str, *, timeout: int) -> int:
    """Adds one to the counter `key` (expiring after `timeout` seconds) and returns it: with
    INCR and EXPIRE in one round trip on Redis."""
    if cache is default_cache:  # a proxy, which isinstance cannot see through
        cache = caches[DEFAULT_CACHE_ALIAS]
    if isinstance(cache, RedisCache):
        name = cache.make_and_validate_key(key)
        pipeline = _redis_client(cache).pipeline(transaction=False)
        pipeline.incr(name)
        pipeline.expire(name, timeout)
        count, _ = pipeline.execute()
        return int(count)
    # Other caches (the database's without REDIS_URL): not atomic between processes, which at
    # worst lets a few requests more through. add() is a no-op when the key exists, so
    # concurrent first requests do not reset it.
    cache.add(key, 0, timeout=timeout)
    try:
        return cache.incr(key)
    except ValueError:  # expired between the two calls
        cache.set(key, 1, timeout=timeout)
        return 1


@functools.lru_cache(maxsize=16)
def _redis_client(cache: RedisCache) -> redis.Redis:
    """One client per cache backend: Django makes a new one, with its table of hundreds of
    response callbacks, for every call. It is thread-safe; its connections are the backend's
    pool's."""
    return cache._cache.get_client(write=True)


class FixedWindowThrottle(SimpleRateThrottle):
    """DRF's throttle on one counter per key and window of the rate's period (cache_count).
    DRF's SimpleRateThrottle reads, unpickles, rewrites and pickles a list of every request's
    time in the window instead, and fails with the cache. The price: up to twice the rate
    across the boundary of two windows. Subclasses give scope, get_cache_key and maybe get_rate.
    """

    def allow_request(self, request: Request, view: Any) -> bool:
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        self.window_end = (window + 1) * self.duration
        # An unreachable cache lets requests through, with a warning: the API must keep
        # answering while Redis is down.
        try:
            count = cache_count(self.cache, f"{key}:{window}", timeout=self.duration)
        except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
            log.warning("throttle_cache_unavailable", scope=self.scope, error=str(exc))
            return True
        return count <= self.num_requests

    def wait(self) -> float:
        return self.window_end - self.now


def _scope_rate(scope: str) -> str:
    return getattr(settings, "PORTAL_RATES", {}).get(scope) or DEFAULT_RATES[scope]


def _address_limit_hit(request: HttpRequest, scope: str) -> int | None:
    """One request of the client's address (behind our own proxies too) under `scope`."""
    key = client_ip(request) or "unknown"
    return rate_limit_hit(scope=f"portal-{scope}", key=key, rate=_scope_rate(scope))


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def _too_many(request: HttpRequest, retry_after: int) -> HttpResponse:
    message = f"Too many requests from your address: try again in {retry_after} seconds."
    if _wants_json(request):
        body = {"error": {"code": "throttled", "message": message, "fields": {}}}
        response: HttpResponse = JsonResponse(body, status=429)
    else:
        page = render_to_string(
            "portal/too_many.html", {"retry_after": retry_after, "message": message}, request
        )
        response = HttpResponse(page, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def rate_limited(
    scope: str, *, anonymous_only: bool = False
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """A page's limit per client address: 429 with Retry-After, as a page or as JSON, past
    settings.PORTAL_RATES[scope]. With anonymous_only, a signed-in staff member is not counted."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not (anonymous_only and request.user.is_staff):
                retry_after = _address_limit_hit(request, scope)
                if retry_after is not None:
                    return _too_many(request, retry_after)
            return view(request, *args, **kwargs)

        return limited

    return decorate


class AnonymousAddressThrottle(BaseThrottle):
    """The same limit for an API view, read without an API key or a staff login: counted with
    the pages' under settings.PORTAL_RATES[scope], so a page and its API share one budget.
    Subclasses give scope. Throttled is a 429 with Retry-After in the API's error shape."""

    scope = ""
    retry_after: int | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        # Key holders have their own limit per key; staff are accountable by name.
        if request.auth is not None or request.user.is_staff:
            return True
        self.retry_after = _address_limit_hit(request, self.scope)
        return self.retry_after is None

    def wait(self) -> float | None:
        return self.retry_after
