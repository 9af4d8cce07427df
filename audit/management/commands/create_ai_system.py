"""Registers an AI system (or finds it) and prints a new API key for it on the last line."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from audit.models import AISystem
from audit.services.systems import ai_system_create, api_key_create


class Command(BaseCommand):
    help = "Create the AI system SLUG if needed and print a new API key for it (last line)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("slug")
        parser.add_argument("--name", help="display name (default: the slug)")
        parser.add_argument("--public", action="store_true", help="receipts readable by anyone")
        parser.add_argument("--key-name", default="created by create_ai_system")

    def handle(self, *args, slug: str, name: str | None, public: bool, key_name: str, **options):  # type: ignore[no-untyped-def]
        system = AISystem.objects.filter(slug=slug).first()
        if system is None:
            system = ai_system_create(slug=slug, name=name or slug, is_public=public)
            self.stdout.write(f"created AI system {slug}")
        else:
            self.stdout.write(f"AI system {slug} exists")
        self.stdout.write(api_key_create(system=system, name=key_name))
