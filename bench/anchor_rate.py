"""Anchors per configured slot of an outside RFC 3161 backend while the entry rate grows tenfold,
with a real Celery worker and beat."""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from django.conf import settings
from django.db import connection

from bench import Figure, log_mark, say
from bench.latency import CeleryStack, Pacer, log_revert_with_jobs
from timestamping import tsa
from timestamping.models import Anchor, AnchorJob, Batch, Entry

INTERVAL = float(os.environ.get("VERIDICT_BENCH_ANCHOR_INTERVAL", "10"))
SLOTS = max(1, int(os.environ.get("VERIDICT_BENCH_ANCHOR_SLOTS", "6")))
RATES = (20.0, 200.0)
BACKEND = "bench-tsa"
WARMUP_SECONDS = 90.0
DRAIN_SECONDS = 60.0


class _TSAHandler(BaseHTTPRequestHandler):
    """An outside RFC 3161 TSA on loopback, answering with the bench's built-in TSA key (what
    answers does not matter here, only how often it is asked)."""

    asked: Counter[str] = Counter()

    def do_POST(self) -> None:
        query = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        reply = tsa.tsa_respond(query)
        _TSAHandler.asked["queries"] += 1
        self.send_response(200)
        self.send_header("Content-Type", "application/timestamp-reply")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: the bench prints its own summary


def _slot(moment: float) -> int:
    return math.floor(moment / INTERVAL)


def _wait(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up after {seconds:.0f} s waiting for {what}")
        time.sleep(0.2)


def run() -> list[Figure]:
    say(
        f"\n== anchor_rate: outside backend {BACKEND!r} with a {INTERVAL:g} s interval; "
        f"entry_append at {RATES[0]:.0f}/s then {RATES[1]:.0f}/s for {SLOTS} slots each; "
        "a Celery worker and beat, other settings default"
    )
    mark = log_mark()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TSAHandler)
    threading.Thread(target=server.serve_forever, name="tsa", daemon=True).start()
    backends = [
        {
            "name": BACKEND,
            "type": "rfc3161",
            "url": f"http://127.0.0.1:{server.server_address[1]}/tsa",
            "interval": INTERVAL,
            "roots": [str(settings.TSA_CA_CERT_FILE)],
        }
    ]
    ours = AnchorJob.objects.filter(backend=BACKEND, batch__number__gt=mark.batch_number)
    phases: list[tuple[float, int, int, float, float]] = []  # rate, first slot, entries, start, end
    try:
        with CeleryStack(variables={"VERIDICT_ANCHORS": json.dumps(backends)}):
            pacer = Pacer()
            # Warm-up at the low rate until the backend has anchored once, then to a slot's start.
            deadline = time.monotonic() + WARMUP_SECONDS
            while not Anchor.objects.filter(
                backend=BACKEND, batch__number__gt=mark.batch_number
            ).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{BACKEND} anchored nothing in {WARMUP_SECONDS:.0f} s")
                pacer.run(rate=RATES[0], seconds=1)
            pacer.run(rate=RATES[0], seconds=(_slot(time.time()) + 1) * INTERVAL - time.time())
            for rate in RATES:
                start = time.time()
                appended = pacer.run(rate=rate, seconds=SLOTS * INTERVAL)
                phases.append((rate, _slot(start + 0.5), len(appended), start, time.time()))
            _wait(
                lambda: not ours.filter(status__in=["pending", "failed"]).exists(),
                DRAIN_SECONDS,
                "the last anchor",
            )
        anchored = set(
            Anchor.objects.filter(backend=BACKEND, batch__number__gt=mark.batch_number).values_list(
                "batch__number", flat=True
            )
        )
        per_slot = Counter(
            _slot(created_at.timestamp())
            for created_at, number in ours.values_list("created_at", "batch__number")
            if number in anchored
        )
        batches = list(
            Batch.objects.filter(number__gt=mark.batch_number).values_list("sealed_at", flat=True)
        )
        entries = Entry.objects.filter(seq__gt=mark.last_seq).count()
    finally:
        server.shutdown()
        server.server_close()
        log_revert_with_jobs(mark)
        connection.close()

    figures = []
    for rate, first_slot, appended, start, end in phases:
        counts = [per_slot[slot] for slot in range(first_slot, first_slot + SLOTS)]
        sealed = sum(1 for sealed_at in batches if start <= sealed_at.timestamp() < end)
        per_hour = sum(counts) / SLOTS * 3600 / INTERVAL
        say(
            f"  {rate:.0f} entries/s: {appended:,} entries ({appended / (end - start):.0f}/s), "
            f"{sealed} batches sealed, anchors per slot {counts} "
            f"= {per_hour:,.0f}/h for a configured {3600 / INTERVAL:,.0f}/h"
        )
        figures.append(
            Figure(
                f"anchor_rate: {BACKEND} anchors/h at {rate:.0f} entries/s",
                per_hour,
                "/h",
                3600 / INTERVAL,
                sum(counts) / SLOTS,
                "1 per slot",
                all(count == 1 for count in counts),
            )
        )
    say(
        f"  {entries:,} entries in all; {len(batches)} batches; the TSA was asked "
        f"{_TSAHandler.asked['queries']} times"
    )
    return figures
