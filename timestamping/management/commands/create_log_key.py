"""Creates the log's Ed25519 signing key file; with --rotate, replaces it by a new one."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from timestamping import keys


class Command(BaseCommand):
    help = (
        "Create the log signing key at VERIDICT_LOG_SIGNING_KEY_FILE (if it exists, nothing "
        "happens). "
        "--rotate retires the current key: its public half stays published, so everything it "
        "signed keeps verifying; its private half is deleted."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--rotate", action="store_true", help="replace an existing key")

    def handle(self, *args, rotate: bool = False, **options):  # type: ignore[no-untyped-def]
        if settings.LOG_SIGNING_KEY:
            raise CommandError("the key comes from VERIDICT_LOG_SIGNING_KEY; rotate it there")
        path = Path(settings.LOG_SIGNING_KEY_FILE)
        if path.exists():
            if not rotate:
                self.stdout.write(f"log key exists: {keys.verifier_key()}")
                return
            with transaction.atomic():
                keys.log_key_publish(keys.verifier_key())
            old = keys.verifier_key()
            path.unlink()
            self.stdout.write(f"retired: {old}")
        keys.write_secret(path, keys.private_key_pem(Ed25519PrivateKey.generate()))
        with transaction.atomic():
            keys.log_key_publish(keys.verifier_key())
        self.stdout.write(f"log key created at {path}")
        self.stdout.write(f"verifier key: {keys.verifier_key()}")
