"""Writes an AI system's evidence package (docs/evidence.md) to a new file, or to stdout.

A package holds the personal data of the people decided about, so it is not left readable by
others by accident: the file is created new with mode 0600 (an existing file is never replaced),
and without --recipient (an auditor's age key) the command refuses to write plaintext to stdout
or into a directory that everyone may write to (such as /tmp) unless --plaintext says so."""

from __future__ import annotations

import os
import stat
import sys
from datetime import date
from pathlib import Path
from typing import IO

from django.core.management.base import BaseCommand, CommandError, CommandParser

from audit.models import AISystem
from audit.services.evidence import (
    EvidenceError,
    EvidenceOpenings,
    evidence_recipient,
    evidence_write,
)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise CommandError(f"{text!r} is not a date (YYYY-MM-DD)") from exc


class Command(BaseCommand):
    help = (
        "Export the evidence package of one AI system: the batches sealed from --from 00:00 UTC "
        "to the end of --to (UTC), with their leaves and openings. OUT is a new file, or - for "
        "stdout."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("out", metavar="OUT")
        parser.add_argument("--system", required=True, help="the AI system's slug")
        parser.add_argument("--from", dest="date_from", type=_date, help="first day (UTC)")
        parser.add_argument("--to", dest="date_to", type=_date, help="last day (UTC)")
        parser.add_argument("--explanations", action="store_true", help="open explanations")
        parser.add_argument("--inputs", action="store_true", help="open inputs")
        parser.add_argument("--recipient", help="encrypt to this age public key (age1...)")
        parser.add_argument(
            "--plaintext",
            action="store_true",
            help="allow an unencrypted package on stdout or in a directory anyone may write to",
        )

    def handle(  # type: ignore[override]
        self,
        *args: object,
        out: str,
        system: str,
        date_from: date | None,
        date_to: date | None,
        explanations: bool,
        inputs: bool,
        recipient: str | None,
        plaintext: bool,
        **options: object,
    ) -> None:
        ai_system = AISystem.objects.filter(slug=system).first()
        if ai_system is None:
            raise CommandError(f"there is no AI system {system!r}")
        if date_from and date_to and date_from > date_to:
            raise CommandError("--from is after --to")
        if recipient:
            try:
                evidence_recipient(recipient)
            except EvidenceError as exc:
                raise CommandError(str(exc)) from exc
        elif not plaintext:
            _refuse_shared(out)
        openings = EvidenceOpenings(explanation=explanations, inputs=inputs)

        def write(file: IO[bytes]) -> None:
            evidence_write(
                system=ai_system,
                date_from=date_from,
                date_to=date_to,
                openings=openings,
                out=file,
                recipient=recipient,
            )

        if out == "-":
            write(sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return
        try:
            descriptor = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError as exc:
            raise CommandError(f"{out} exists: the package is written to a new file") from exc
        try:
            with os.fdopen(descriptor, "wb") as file:
                write(file)
        except BaseException:
            os.unlink(out)  # no half package left behind
            raise
        self.stderr.write(f"wrote {out}")


def _refuse_shared(out: str) -> None:
    if out == "-":
        raise CommandError(
            "refusing to write an unencrypted package to stdout: give --recipient age1... "
            "(the auditor's key) or --plaintext"
        )
    directory = Path(out).resolve().parent
    if directory.stat().st_mode & stat.S_IWOTH:
        raise CommandError(
            f"refusing to write an unencrypted package into {directory}, which anyone may write "
            "to: give --recipient age1... (the auditor's key) or --plaintext"
        )
