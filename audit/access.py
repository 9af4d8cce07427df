"""Who may read what: receipts of a private AI system's entries are for its key and the staff
whose scope covers the system (review.permissions)."""

from __future__ import annotations

import base64
import json
from typing import Any

from django.db.models import QuerySet

from audit.models import AISystem, Document, SystemAPIKey
from review.permissions import systems_in_scope
from review.selectors import review_chain_links
from timestamping.models import Entry


def entry_system_slug(entry: Entry) -> str | None:
    """The AI system an entry belongs to: every envelope audit writes names it."""
    body = json.loads(bytes(entry.canonical))["body"]
    return body.get("system") if isinstance(body, dict) else None


def receipt_allowed(entry: Entry, request: Any) -> bool:
    slug = entry_system_slug(entry)
    if slug is None:
        return True
    if isinstance(request.auth, SystemAPIKey) and request.auth.system.slug == slug:
        return True
    if AISystem.objects.filter(slug=slug, is_public=True).exists():
        return True
    return _staff_in_scope(request.user, AISystem.objects.filter(slug=slug))


def _staff_in_scope(user: Any, system: QuerySet[AISystem]) -> bool:
    if not (user.is_authenticated and user.is_staff):
        return False
    systems = systems_in_scope(user)
    return system.exists() if systems is None else system.filter(pk__in=systems).exists()


def receipt_extra(entry: Entry, request: Any) -> dict[str, Any]:
    """Receipt fields for this reader only: a private document's salt, for its system's key and
    staff, so that whoever holds the file can check it against the leaf's commitment; and a
    decision's review chain (informational: each link is an entry with its own receipt)."""
    if entry.kind == "decision":
        return review_chain_links(entry=entry, request=request)
    if entry.kind != "document":
        return {}
    document = Document.objects.filter(entry=entry, private=True).only("system_id", "salt").first()
    if document is None or document.salt is None:
        return {}
    if isinstance(request.auth, SystemAPIKey):
        allowed = request.auth.system_id == document.system_id
    else:
        allowed = _staff_in_scope(request.user, AISystem.objects.filter(pk=document.system_id))
    if not allowed:
        return {}
    return {"document": {"salt_b64": base64.b64encode(bytes(document.salt)).decode()}}
