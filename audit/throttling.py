"""Request rate per API key (429 with Retry-After past it)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request

from audit.models import SystemAPIKey
from veridict.ratelimit import FixedWindowThrottle


class SystemKeyRateThrottle(FixedWindowThrottle):
    """A fixed window per key; ingestion keeps answering while Redis is down."""

    scope = "ai_system"

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        if not isinstance(request.auth, SystemAPIKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.prefix}
