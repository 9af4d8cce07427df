"""Per-address rate limits for the portal's lookups, counted in Django's cache (Redis with
REDIS_URL, else the database), answering 429 with Retry-After as a page or as JSON."""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template.loader import render_to_string

from staff.clients import client_ip

# Settings may override these ("<count>/<s|min|h>"); looking documents and entries up is cheap,
# but a public lookup must not let one address enumerate the log.
DEFAULT_RATES = {"lookup": "60/min", "entry": "120/min"}
PERIODS = {"s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hour": 3600}


def rate_of(scope: str) -> tuple[int, int]:
    """(requests, seconds) for a scope, from settings.PORTAL_RATES or the default."""
    text = getattr(settings, "PORTAL_RATES", {}).get(scope) or DEFAULT_RATES[scope]
    count, _, period = text.partition("/")
    return int(count), PERIODS[period]


def client_address(request: HttpRequest) -> str:
    """The client's address, behind our own proxies too (settings.TRUSTED_PROXY_COUNT)."""
    return client_ip(request) or "unknown"


def _wants_json(request: HttpRequest) -> bool:
    accept = request.headers.get("Accept", "")
    return "application/json" in accept and "text/html" not in accept


def too_many(request: HttpRequest, retry_after: int) -> HttpResponse:
    message = f"Too many lookups from your address: try again in {retry_after} seconds."
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
    scope: str,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Fixed windows per address: one cache increment per request. A burst at a window's edge
    may get up to twice the rate, which is fine for keeping scrapers off, and costs no history."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def limited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            allowed, period = rate_of(scope)
            now = time.time()
            window = int(now // period)
            key = f"portal-rate:{scope}:{client_address(request)}:{window}"
            # add() is a no-op when the key exists, so concurrent first requests do not reset it.
            cache.add(key, 0, timeout=period + 1)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=period + 1)
                count = 1
            if count > allowed:
                retry_after = max(1, math.ceil((window + 1) * period - now))
                return too_many(request, retry_after)
            return view(request, *args, **kwargs)

        return limited

    return decorate
