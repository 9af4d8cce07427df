"""`manage.py create_tsa`: creates the built-in TSA's key and certificates, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from timestamping.tsa import tsa_create


class Command(BaseCommand):
    help = (
        "Creates the built-in RFC 3161 TSA (a CA, and a TSA key and certificate it issues) at "
        "TSA_KEY_FILE, TSA_CERT_FILE and TSA_CA_CERT_FILE, unless they exist."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--ca-key-file",
            type=Path,
            help="also keep the CA private key here (by default it is discarded once it has "
            "issued the TSA certificate)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        files = {
            "TSA_KEY_FILE": Path(settings.TSA_KEY_FILE),
            "TSA_CERT_FILE": Path(settings.TSA_CERT_FILE),
            "TSA_CA_CERT_FILE": Path(settings.TSA_CA_CERT_FILE),
        }
        ca_cert_file = files["TSA_CA_CERT_FILE"]
        missing = [f"{name} ({path})" for name, path in files.items() if not path.exists()]
        if not missing:
            self.stdout.write(
                f"The built-in TSA already exists; its CA certificate is {ca_cert_file}"
            )
            return
        if len(missing) < len(files):
            # A new certificate cannot be issued for the old key (the CA key is gone), and a new
            # key would orphan the old files: a person has to decide.
            raise CommandError(
                f"the built-in TSA is incomplete, {', '.join(missing)} missing; restore it, or "
                "move the remaining TSA files away and run create_tsa again"
            )
        try:
            tsa_create(
                key_file=files["TSA_KEY_FILE"],
                cert_file=files["TSA_CERT_FILE"],
                ca_cert_file=ca_cert_file,
                ca_key_file=options["ca_key_file"],
            )
        except FileExistsError as exc:  # another process created it meanwhile, or the CA key
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the built-in TSA; its CA certificate (publish it) is {ca_cert_file}"
            )
        )
