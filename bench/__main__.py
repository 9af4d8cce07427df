"""Runs the ledger benchmarks: `python -m bench` runs them all, `python -m bench seal` one."""

from __future__ import annotations

import argparse
import importlib
import sys
import time

import bench
from bench import Figure, say

BENCHMARKS = (
    "seal",
    "proofs",
    "stream_proofs",
    "verify",
    "single",
    "upload",
    "bulk",
    "latency",
    "anchor_rate",
    "lookup",
    "browser_verify",
    "bias_report",
    "sqlite_durability",
    "parse",
    "audit",
    "evidence",
)
# In memory only: these need neither the bench database nor its keys.
WITHOUT_DATABASE = {"parse", "audit"}


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "ms":
        return f"{value:.3f} ms"
    return f"{value:,.0f} {unit}"


def table_print(figures: list[Figure]) -> None:
    header = ("figure", "value", "ceiling", "ratio", "target", "result")
    rows = [
        (
            figure.name,
            _number(figure.value, figure.unit),
            _number(figure.ceiling, figure.unit),
            "-" if figure.ratio is None else f"{figure.ratio:.3f}",
            figure.target,
            {True: "pass", False: "FAIL", None: "-"}[figure.passed],
        )
        for figure in figures
    ]
    widths = [max(len(row[column]) for row in [header, *rows]) for column in range(len(header))]
    for row in [header, tuple("-" * width for width in widths), *rows]:
        cells = [
            cell.ljust(width) if column == 0 else cell.rjust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        say("  ".join(cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmarks of the ledger core on PostgreSQL; each figure is a ratio to a "
        "ceiling measured in the same run (see bench/README.md).",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help=f"one of {', '.join(BENCHMARKS)}; all by default"
    )
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}: choose from {', '.join(BENCHMARKS)}")

    started = time.perf_counter()
    if set(names) - WITHOUT_DATABASE:
        bench.prepare()
    figures: list[Figure] = []
    for name in names:
        figures += importlib.import_module(f"bench.{name}").run()
    say(f"\n== results ({bench.DATABASE_NAME}, {time.perf_counter() - started:.0f} s in all)")
    table_print(figures)
    # A missed target fails `make bench`, so that nobody mistakes a regression for noise unseen.
    return 1 if any(figure.passed is False for figure in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
