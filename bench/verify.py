"""Receipt verification throughput, against the raw Ed25519 verifications those receipts need."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from bench import Figure, log_ensure, median, say
from timestamping import selectors
from timestamping.models import Batch, Entry, LogKey

RECEIPTS = max(1, int(os.environ.get("VERIDICT_BENCH_RECEIPTS", "500")))
REPETITIONS = 3


def _receipts(size: int) -> list[dict[str, Any]]:
    """Receipts of entries spread over the whole log, as GET /entries/{id}/receipt serves them."""
    rng = random.Random(2611)
    latest = selectors.batch_latest()
    assert latest is not None
    first_seq = Batch.objects.get(number=1).first_seq
    seqs = rng.sample(range(first_seq, latest.last_seq + 1), min(RECEIPTS, size))
    entries = Entry.objects.filter(seq__in=seqs)
    return [selectors.receipt_get(entry=entry) for entry in entries]


def run() -> list[Figure]:
    size = log_ensure()
    say(
        f"\n== verify: receipt_verify of {RECEIPTS:,} receipts, TSA CA pinned, "
        f"{REPETITIONS} repetitions"
    )
    clock = time.perf_counter()
    receipts = _receipts(size)
    say(
        f"fetched {len(receipts):,} receipts with selectors.receipt_get "
        f"in {time.perf_counter() - clock:.1f} s"
    )
    pinned = [
        VerifierKey.parse(text) for text in LogKey.objects.values_list("verifier_key", flat=True)
    ]
    ca_pem = Path(settings.TSA_CA_CERT_FILE).read_bytes()

    # One untimed pass checks every receipt fully and records the Ed25519 verifications it makes.
    signed: list[tuple[bytes, bytes, bytes]] = []
    original = VerifierKey.verifies

    def recording(key: VerifierKey, message: bytes, signature: bytes) -> bool:
        signed.append((key.public_key, message, signature))
        return original(key, message, signature)

    with mock.patch.object(VerifierKey, "verifies", recording):
        for receipt in receipts:
            report = receipt_verify(receipt, keys=pinned, tsa_ca_pem=ca_pem)
            if not report.ok or report.steps[-1].name != "anchor[0]":
                raise AssertionError(f"a bench receipt does not verify: {report.steps}")
    per_receipt = len(signed) / len(receipts)
    say(
        f"each receipt needs {per_receipt:g} Ed25519 verifications "
        "(SET, checkpoint, anchored checkpoint)"
    )

    public_keys = {raw: Ed25519PublicKey.from_public_bytes(raw) for raw, _, _ in signed}
    verify_seconds: list[float] = []
    ceiling_seconds: list[float] = []
    for _ in range(REPETITIONS):
        start = time.perf_counter()
        for receipt in receipts:
            receipt_verify(receipt, keys=pinned, tsa_ca_pem=ca_pem)
        verify_seconds.append(time.perf_counter() - start)
        # The ceiling: the same signatures checked with keys already loaded, and nothing else.
        start = time.perf_counter()
        for raw, message, signature in signed:
            public_keys[raw].verify(signature, message)
        ceiling_seconds.append(time.perf_counter() - start)
        say(
            f"  receipt_verify {len(receipts) / verify_seconds[-1]:,.0f} receipts/s; "
            f"Ed25519 alone {len(receipts) / ceiling_seconds[-1]:,.0f} receipts/s"
        )
    rate = len(receipts) / median(verify_seconds)
    ceiling = len(receipts) / median(ceiling_seconds)
    ratios = [
        ceiling_time / verify_time
        for ceiling_time, verify_time in zip(ceiling_seconds, verify_seconds, strict=True)
    ]
    say(
        f"verify median: {rate:,.0f} receipts/s; ceiling {ceiling:,.0f} receipts/s; "
        f"ratio {median(ratios):.3f}"
    )
    return [
        Figure(
            "verify: receipts/s, receipt_verify with TSA CA", rate, "/s", ceiling, median(ratios)
        )
    ]
