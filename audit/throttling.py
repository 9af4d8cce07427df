"""Request rate per API key (429 with Retry-After past it)."""

from __future__ import annotations

from typing import Any

import structlog
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

from audit.models import SystemAPIKey

log = structlog.get_logger(__name__)


class SystemKeyRateThrottle(SimpleRateThrottle):
    scope = "ai_system"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, SystemAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}

    def allow_request(self, request: Request, view: Any) -> bool:
        # The counts live in the cache (Redis in production). Ingestion must keep answering
        # while Redis is down, so an unreachable cache lets requests through, with a warning.
        try:
            return super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - any cache backend's connection error
            log.warning("throttle_cache_unavailable", error=str(exc))
            return True
