"""Who may read what: receipts of a private AI system's entries are for its key and staff."""

from __future__ import annotations

import json
from typing import Any

from audit.models import AISystem, SystemAPIKey
from timestamping.models import Entry


def entry_system_slug(entry: Entry) -> str | None:
    """The AI system an entry belongs to: every envelope audit writes names it."""
    body = json.loads(bytes(entry.canonical))["body"]
    return body.get("system") if isinstance(body, dict) else None


def receipt_allowed(entry: Entry, request: Any) -> bool:
    slug = entry_system_slug(entry)
    if slug is None:
        return True
    if isinstance(request.auth, SystemAPIKey):
        return request.auth.system.slug == slug
    if request.user.is_authenticated and request.user.is_staff:
        return True
    return AISystem.objects.filter(slug=slug, is_public=True).exists()
