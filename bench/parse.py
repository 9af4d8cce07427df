"""Parsing throughput: ijson_loads (the API's I-JSON parser) against json.loads on the same bytes.

Valid bodies (one decision, a bulk-size array of decisions) show what the I-JSON checks cost; the
adversarial family (`[` * 257, then an unterminated string of escaped quotes), refused before
json.loads, shows that the pre-parse scan is linear: its MB/s must not fall as the body grows.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable

from rest_framework.exceptions import ParseError

from audit.api import DECISION_EXAMPLE
from bench import Figure, median, say
from veridict.parsers import MAX_DEPTH, ijson_loads

TARGET_RATIO = 0.5
REPETITIONS = max(1, int(os.environ.get("VERIDICT_BENCH_PARSE_REPS", "5")))
BULK_BYTES = 4 * 1024 * 1024
ADVERSARIAL_SIZES = (64 * 1024, 1024 * 1024, 8 * 1024 * 1024)
# Each timing repeats its call until this much time has passed, so that small bodies are not
# measured at the resolution of the clock.
MIN_SECONDS = 0.2


def decision_record(rng: random.Random, number: int) -> dict[str, object]:
    """A decision request as an AI system sends it: the schema's example with varied values."""
    record = json.loads(json.dumps(DECISION_EXAMPLE))
    record["client_decision_id"] = f"loan-2026-{number:06d}"
    record["inputs"] = {
        "income": rng.randrange(10_000, 200_000),
        "amount": rng.randrange(1_000, 50_000),
        "term_months": rng.choice([12, 24, 36, 48, 60]),
    }
    record["output"] = {"label": rng.choice(["grant", "deny"]), "score": round(rng.random(), 4)}
    record["confidence"] = round(rng.random(), 4)
    record["subject_ref"] = f"applicant-{rng.randrange(10**6):06d}"
    record["explanation"] = {
        "main_factors": rng.sample(
            ["debt-to-income ratio", "short credit history", "income", 'a "thin" file'], 2
        ),
        "ai_role": "recommendation reviewed by a loan officer",
    }
    return record


def bulk_body(rng: random.Random, size: int) -> bytes:
    """A JSON array of decision records of about `size` bytes."""
    records: list[bytes] = []
    total = 0
    while total < size:
        records.append(json.dumps(decision_record(rng, len(records))).encode())
        total += len(records[-1]) + 2
    return b"[" + b", ".join(records) + b"]"


def adversarial_body(size: int) -> bytes:
    """The body that made the old regex pre-check quadratic: nesting one level past the limit,
    then a string of escaped quotes that never ends."""
    head = b"[" * (MAX_DEPTH + 1) + b'"'
    return head + b'\\"' * ((size - len(head)) // 2)


def refused(raw: bytes) -> None:
    try:
        ijson_loads(raw)
    except ParseError:
        return
    raise AssertionError("the adversarial body was not refused")


def rate(function: Callable[[bytes], object], raw: bytes) -> float:
    """MB/s of `function` over `raw`."""
    calls = 0
    started = time.perf_counter()
    while (elapsed := time.perf_counter() - started) < MIN_SECONDS or not calls:
        function(raw)
        calls += 1
    return len(raw) * calls / elapsed / 1e6


def figure(name: str, ours: list[float], ceiling: list[float]) -> Figure:
    ratios = [value / floor for value, floor in zip(ours, ceiling, strict=True)]
    ratio = median(ratios)
    return Figure(
        name, median(ours), "MB/s", median(ceiling), ratio, f"≥ {TARGET_RATIO}", ratio >= 0.5
    )


def run() -> list[Figure]:
    say("\n== parse: ijson_loads against json.loads on the same valid bytes (MB/s)")
    rng = random.Random(1126)
    single = json.dumps(decision_record(rng, 0)).encode()
    bulk = bulk_body(rng, BULK_BYTES)
    assert ijson_loads(single) == json.loads(single) and ijson_loads(bulk) == json.loads(bulk)
    valid = {"one decision": single, f"bulk array, {len(bulk) / 1e6:.1f} MB": bulk}
    # The adversarial body's ceiling is json.loads on valid bytes of the same size.
    adversarial = {
        size: (adversarial_body(size), bulk_body(rng, size)) for size in ADVERSARIAL_SIZES
    }
    ours: dict[str, list[float]] = {}
    ceiling: dict[str, list[float]] = {}
    for repetition in range(REPETITIONS):
        # Alternated in every repetition, so that the load of a shared machine hits both alike.
        for name, raw in valid.items():
            ceiling.setdefault(name, []).append(rate(json.loads, raw))
            ours.setdefault(name, []).append(rate(ijson_loads, raw))
        for size, (attack, same_size) in adversarial.items():
            name = f"adversarial, {size // 1024:,} KiB"
            ceiling.setdefault(name, []).append(rate(json.loads, same_size))
            ours.setdefault(name, []).append(rate(refused, attack))
        say(
            f"  repetition {repetition + 1}: "
            + ", ".join(
                f"{name} {ours[name][-1]:,.0f} vs {ceiling[name][-1]:,.0f}" for name in ours
            )
        )
    return [figure(f"parse: {name}", ours[name], ceiling[name]) for name in ours]
