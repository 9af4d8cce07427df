"""The texts Veridict signs: checkpoints (C2SP tlog-checkpoint) and signed entry timestamps."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

SET_HEADER = "veridict/set/v1"
BATCH_EXTENSION = "veridict-batch"
ZERO_HASH_HEX = "0" * 64
RFC3339_MICROS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class FormatError(ValueError):
    """A signed text does not have the shape DESIGN.md gives it."""


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with microseconds and a Z: the one time format of leaves and SETs."""
    if moment.tzinfo is None:
        raise ValueError("naive datetime")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    if not RFC3339_MICROS.fullmatch(text):
        raise FormatError(f"time {text!r} is not RFC 3339 UTC with microseconds and Z")
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def _parse_decimal(text: str, what: str) -> int:
    if not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise FormatError(f"{what} {text!r} is not a decimal number")
    return int(text)


def _parse_hex_hash(text: str, what: str) -> bytes:
    if not _HEX64.fullmatch(text):
        raise FormatError(f"{what} {text!r} is not 64 lower-case hex digits")
    return bytes.fromhex(text)


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    tree_size: int
    root: bytes
    batch_number: int
    header_hash: bytes

    def body(self) -> str:
        return (
            f"{self.origin}\n{self.tree_size}\n{base64.b64encode(self.root).decode()}\n"
            f"{BATCH_EXTENSION} {self.batch_number} {self.header_hash.hex()}\n"
        )

    @classmethod
    def parse(cls, body: str) -> Checkpoint:
        lines = body.split("\n")
        if len(lines) != 5 or lines[-1] != "":
            raise FormatError("a checkpoint has four lines: origin, size, root, veridict-batch")
        origin, size_text, root_text, extension = lines[:4]
        try:
            root = base64.b64decode(root_text, validate=True)
        except binascii.Error as exc:
            raise FormatError("checkpoint root is not base64") from exc
        if len(root) != 32:
            raise FormatError("checkpoint root is not 32 bytes")
        fields = extension.split(" ")
        if len(fields) != 3 or fields[0] != BATCH_EXTENSION:
            raise FormatError(f"checkpoint extension {extension!r} is not 'veridict-batch N HASH'")
        return cls(
            origin=origin,
            tree_size=_parse_decimal(size_text, "checkpoint tree size"),
            root=root,
            batch_number=_parse_decimal(fields[1], "checkpoint batch number"),
            header_hash=_parse_hex_hash(fields[2], "checkpoint batch header hash"),
        )


@dataclass(frozen=True)
class SignedEntryTimestamp:
    origin: str
    leaf_hash: bytes
    received_at: str
    mmd_seconds: int

    def body(self) -> str:
        return (
            f"{SET_HEADER}\n{self.origin}\n{self.leaf_hash.hex()}\n{self.received_at}\n"
            f"{self.mmd_seconds}\n"
        )

    @classmethod
    def parse(cls, body: str) -> SignedEntryTimestamp:
        lines = body.split("\n")
        if len(lines) != 6 or lines[0] != SET_HEADER or lines[-1] != "":
            raise FormatError(
                f"a signed entry timestamp starts with {SET_HEADER} and has five lines"
            )
        parse_time(lines[3])
        return cls(
            origin=lines[1],
            leaf_hash=_parse_hex_hash(lines[2], "SET leaf hash"),
            received_at=lines[3],
            mmd_seconds=_parse_decimal(lines[4], "SET maximum merge delay"),
        )
