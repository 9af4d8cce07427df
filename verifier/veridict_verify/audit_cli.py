"""The `veridict-audit` command: checks an evidence package and prints each step."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from veridict_verify.audit_html import audit_html
from veridict_verify.cli import EXIT_UNREADABLE, exit_status, pinned_arguments_add, pinned_read
from veridict_verify.evidence import PackageUnreadable, package_audit
from veridict_verify.note import NoteError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veridict-audit",
        description="Check a Veridict evidence package (docs/evidence.md) offline against keys "
        "you pin: every leaf, the system log's completeness over the range, the checkpoints and "
        "anchors, the openings; then recompute the bias report and the oversight facts.",
        epilog="Exit status: 0 every step passed, 1 a step failed, 2 unreadable input, "
        "3 a batch is not anchored yet.",
    )
    parser.add_argument("package", type=Path, help="the evidence package (.ndjson.gz)")
    pinned_arguments_add(parser)
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="REPORT",
        help="a bias report (GET /api/v1/bias/report, or a published audit's report) to diff "
        "the recomputed one against",
    )
    parser.add_argument("--html", type=Path, metavar="FILE", help="write an HTML report here")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        keys, tsa_ca = pinned_read(args)
        compare = json.loads(args.compare.read_bytes()) if args.compare else None
        if compare is not None and not isinstance(compare, dict):
            raise ValueError(f"{args.compare} is not a bias report")
        result = package_audit(
            args.package, keys=keys, tsa_ca_pem=tsa_ca, rpc_urls=args.rpc_url, compare=compare
        )
    except (OSError, ValueError, NoteError) as exc:  # PackageUnreadable is a ValueError
        kind = "unreadable package" if isinstance(exc, PackageUnreadable) else "bad input"
        print(f"veridict-audit: {kind}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = result.report
    if args.html:
        args.html.write_text(audit_html(result), encoding="utf-8")
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        for step in report.steps:
            print(f"{step.status.upper():8} {step.name:28} {step.detail}")
        for line in _summary(result.facts):
            print(f"         {line}")
        print(report.as_dict()["verdict"].upper())
    return exit_status(report)


def _summary(facts: dict) -> list[str]:
    """The bias report's headline figures per group, under the steps."""
    report = (facts.get("bias") or {}).get("report")
    if not report:
        return []
    lines = [f"bias report over {', '.join(report['attributes'])} ({report['outcome']} outcome):"]
    for group in report["groups"]:
        rate = group["rates"]["selection_rate"]
        ratio = group["impact_ratio"]
        lines.append(
            f"  {group['key']:24} n={group['count']:<7} selection "
            + (
                f"{rate['value']:.3f} [{rate['low']:.3f}, {rate['high']:.3f}]"
                if rate["value"] is not None
                else "n/a"
            )
            + (f"  impact ratio {ratio:.3f}" if ratio is not None else "")
            + ("  below four-fifths" if group["four_fifths"] else "")
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
