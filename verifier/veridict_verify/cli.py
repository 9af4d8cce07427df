"""The `veridict-verify` command: checks one receipt and prints each step."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from veridict_verify.ethereum import RPCNode
from veridict_verify.note import NoteError, VerifierKey
from veridict_verify.receipt import Report, receipt_verify

EXIT_OK, EXIT_FAILED, EXIT_UNREADABLE, EXIT_PENDING = 0, 1, 2, 3


def pinned_arguments_add(parser: argparse.ArgumentParser) -> None:
    """What a user pins, never taken from what is checked: the log's keys, the TSA CAs and the
    Ethereum nodes (veridict-verify and veridict-audit alike)."""
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        required=True,
        help="a log verifier key <name>+<hex id>+<base64> (repeat for past keys)",
    )
    parser.add_argument(
        "--tsa-ca", type=Path, action="append", default=[], help="a TSA CA certificate (PEM)"
    )
    parser.add_argument(
        "--rpc-url",
        action="append",
        default=[],
        metavar="URL",
        help="an Ethereum JSON-RPC node you trust (your own) to check ethereum anchors against; "
        "repeat for anchors on several chains; without it their chain check is skipped",
    )


def pinned_read(args: argparse.Namespace) -> tuple[list[VerifierKey], bytes | None]:
    """The pinned keys and TSA CA certificates (concatenated PEM, None for none); the RPC URLs
    are refused here if they are not http(s), before any step runs. OSError, ValueError or
    NoteError for what cannot be read."""
    keys = [VerifierKey.parse(text) for text in args.key]
    tsa_ca = b"".join(path.read_bytes() for path in args.tsa_ca) or None
    for url in args.rpc_url:
        RPCNode(url)
    return keys, tsa_ca


def exit_status(report: Report) -> int:
    if report.failed:
        return EXIT_FAILED
    return EXIT_PENDING if report.pending else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="veridict-verify",
        description="Check a Veridict receipt offline against keys you pin (and, for ethereum "
        "anchors, against a JSON-RPC node you choose).",
        epilog="Exit status: 0 verified, 1 a step failed, 2 unreadable input, 3 not sealed yet.",
    )
    parser.add_argument("receipt", type=Path, help="the receipt JSON file ('-' for standard input)")
    pinned_arguments_add(parser)
    parser.add_argument("--document", type=Path, help="check that the entry registers this file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def _sha256_file(path: Path) -> bytes:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.digest()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        keys, tsa_ca = pinned_read(args)
        raw = sys.stdin.buffer.read() if str(args.receipt) == "-" else args.receipt.read_bytes()
        receipt = json.loads(raw)
        document = _sha256_file(args.document) if args.document else None
    except (OSError, ValueError, NoteError) as exc:
        print(f"veridict-verify: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    report = receipt_verify(
        receipt,
        keys=keys,
        tsa_ca_pem=tsa_ca,
        document_sha256=document,
        rpc_urls=args.rpc_url,
    )
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        for step in report.steps:
            print(f"{step.status.upper():8} {step.name:22} {step.detail}")
        print(report.as_dict()["verdict"].upper())
    return exit_status(report)


if __name__ == "__main__":
    sys.exit(main())
