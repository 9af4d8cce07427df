"""`manage.py verify_ledger`: recomputes the whole stored log and names the first mismatch."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm
from veridict_verify.note import NoteError, VerifierKey

from timestamping.ledger_check import ledger_verify
from timestamping.models import Entry


class Command(BaseCommand):
    help = (
        "Recompute every leaf hash, SET, tree tile, root, batch header, chain link, checkpoint "
        "signature and time-stamp (built-in, and remote ones whose roots are configured) of the "
        "stored log. Prints 'ledger verified: ...' and exits 0, or names the first mismatch and "
        "where it is and exits 1."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
        parser.add_argument(
            "--key",
            action="append",
            default=[],
            help="pin a verifier key <name>+<hex id>+<base64> (repeat for past keys) instead of "
            "trusting the keys published in the database",
        )
        parser.add_argument(
            "--tsa-ca",
            type=Path,
            help="the built-in TSA's CA certificate (PEM); default TSA_CA_CERT_FILE",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            keys = [VerifierKey.parse(text) for text in options["key"]] or None
        except NoteError as exc:
            raise CommandError(f"--key: {exc}") from exc
        ca_path = options["tsa_ca"] or Path(settings.TSA_CA_CERT_FILE)
        try:
            tsa_ca_pem = ca_path.read_bytes()
        except OSError as exc:
            raise CommandError(
                f"cannot read the TSA CA certificate at {ca_path} ({exc.strerror}): pass --tsa-ca"
            ) from exc

        quiet = options["no_progress"] or not sys.stderr.isatty()
        with tqdm(
            total=None if quiet else Entry.objects.count(),
            unit=" entries",
            unit_scale=True,
            file=sys.stderr,
            disable=quiet,
        ) as bar:
            report = ledger_verify(keys=keys, tsa_ca_pem=tsa_ca_pem, progress=bar.update)

        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict(), indent=2))
        if report.mismatch is not None:
            raise CommandError(report.mismatch.message())
        if not options["json"]:
            self.stdout.write(report.summary())
