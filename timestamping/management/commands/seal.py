"""`manage.py seal`: seals pending entries into the next batch, once or until interrupted."""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db import close_old_connections

from timestamping import selectors
from timestamping.services import batch_seal


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):  # also refuses NaN
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds of at least 0")
    return value


class Command(BaseCommand):
    help = (
        "Seal the pending entries into the next batch and print its number and tree size. "
        "With --loop SECONDS, keep sealing until interrupted (Ctrl-C or SIGTERM), waiting SECONDS "
        "whenever nothing is pending; several sealers may run at once, the database makes them "
        "take turns."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--max-entries",
            type=_positive_int,
            default=None,
            help="seal at most this many entries per batch (default: VERIDICT_SEAL_MAX_ENTRIES)",
        )
        parser.add_argument(
            "--loop",
            type=_seconds,
            default=None,
            metavar="SECONDS",
            help="seal repeatedly until interrupted, pausing SECONDS when nothing is pending",
        )

    def handle(
        self, *args: Any, max_entries: int | None = None, loop: float | None = None, **options: Any
    ) -> None:
        if loop is None:
            self._seal_once(max_entries)
            return
        stop = threading.Event()
        self._stop_on_signals(stop)
        while not stop.is_set():
            # A long-running sealer must not keep a connection the server dropped meanwhile.
            close_old_connections()
            sealed_full_batch = self._seal_once(max_entries, quiet=True)
            # A full batch means more may be waiting: seal again at once instead of pausing.
            if not sealed_full_batch:
                stop.wait(loop)
        self.stdout.write("stopped")
        self.stdout.flush()

    def _seal_once(self, max_entries: int | None, *, quiet: bool = False) -> bool:
        """Seals one batch and prints it; True when the batch was full (more may be pending)."""
        batch = batch_seal(max_entries=max_entries)
        if batch is None:
            if not quiet:
                self.stdout.write(f"nothing to seal: tree size {selectors.tree_size_current()}")
            return False
        added = batch.tree_size - batch.prev_tree_size
        self.stdout.write(
            f"sealed batch {batch.number}: tree size {batch.tree_size} "
            f"({added} {'entry' if added == 1 else 'entries'})"
        )
        self.stdout.flush()
        return added >= (max_entries or settings.SEAL_MAX_ENTRIES)

    def _stop_on_signals(self, stop: threading.Event) -> None:
        """The first SIGINT or SIGTERM lets the seal under way commit (or roll back) before the
        loop ends; a second one interrupts at once."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set there; the caller stops the loop otherwise

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stop.set()
            signal.signal(signal.SIGINT, signal.default_int_handler)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
