"""Creates the master key file that wraps every subject's data key."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand

from audit import vault
from timestamping.keys import write_secret


class Command(BaseCommand):
    help = "Create the master key at VERIDICT_MASTER_KEY_FILE; nothing happens if it exists."

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        if settings.MASTER_KEY:
            self.stdout.write("the master key comes from VERIDICT_MASTER_KEY")
            return
        path = Path(settings.MASTER_KEY_FILE)
        if path.exists():
            self.stdout.write(f"master key exists: {path}")
            return
        write_secret(path, vault.master_key_text(vault.data_key_new()).encode())
        self.stdout.write(
            f"master key created at {path}: back it up; without it no personal data can be read"
        )
