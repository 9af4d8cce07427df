"""AI systems and their API keys."""

from __future__ import annotations

from django.db import transaction

from audit.models import AISystem, SystemAPIKey


def ai_system_create(*, slug: str, name: str, is_public: bool = False) -> AISystem:
    with transaction.atomic():
        return AISystem.objects.create(slug=slug, name=name, is_public=is_public)


def api_key_create(*, system: AISystem, name: str) -> str:
    """A new key for the system; only its hash is stored, so the key is shown this once."""
    _, key = SystemAPIKey.objects.create_key(system=system, name=name)
    return key
