"""C2SP signed notes with Ed25519 keys: key ids, verifier key strings, signing and opening notes."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ALG_ED25519 = b"\x01"
SIGNATURE_PREFIX = "\u2014 "  # an em dash and a space start every signature line


class NoteError(ValueError):
    """A note is malformed, or no pinned key signed it."""


def key_id(name: str, public_key: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + ALG_ED25519 + public_key).digest()[:4]


def _check_name(name: str) -> None:
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise NoteError(f"key name {name!r} is empty or holds '+' or white space")


@dataclass(frozen=True)
class VerifierKey:
    name: str
    key_id: bytes
    public_key: bytes

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Reads `<name>+<hex key id>+<base64(0x01 || public key)>` and checks that the id fits."""
        parts = text.strip().split("+", 2)  # the base64 key may itself hold "+"
        if len(parts) != 3:
            raise NoteError("a verifier key reads <name>+<hex key id>+<base64 key>")
        name, hex_id, encoded = parts
        _check_name(name)
        if not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise NoteError(f"verifier key id {hex_id!r} is not 8 lower-case hex digits")
        try:
            raw = base64.b64decode(encoded, validate=True)
            claimed_id = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise NoteError(f"verifier key is not hex and base64: {exc}") from exc
        if len(raw) != 33 or raw[:1] != ALG_ED25519:
            raise NoteError("verifier key is not an Ed25519 key (0x01 and 32 bytes)")
        if len(claimed_id) != 4 or claimed_id != key_id(name, raw[1:]):
            raise NoteError(f"verifier key id {hex_id} does not match its name and key")
        return cls(name=name, key_id=claimed_id, public_key=raw[1:])

    @classmethod
    def from_public_key(cls, name: str, public_key: Ed25519PublicKey) -> VerifierKey:
        _check_name(name)
        raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(name=name, key_id=key_id(name, raw), public_key=raw)

    def __str__(self) -> str:
        encoded = base64.b64encode(ALG_ED25519 + self.public_key).decode()
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verifies(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


def note_sign(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """A signed note: the text (ending in a newline), a blank line, one signature line."""
    if not text.endswith("\n") or "\n\n" in text:
        raise NoteError("note text must end with a newline and hold no blank line")
    verifier = VerifierKey.from_public_key(name, private_key.public_key())
    signature = private_key.sign(text.encode())
    encoded = base64.b64encode(verifier.key_id + signature).decode()
    return f"{text}\n{SIGNATURE_PREFIX}{name} {encoded}\n"


def note_split(note: str) -> tuple[str, list[tuple[str, bytes, bytes]]]:
    """The note's text and its signatures as (key name, key id, signature)."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("not a signed note: no blank line before the signatures")
    text, block = note[: cut + 1], note[cut + 2 :]
    if any(ch < " " and ch != "\n" for ch in note):
        raise NoteError("a note holds no control characters but newlines")
    signatures = []
    for line in block[:-1].split("\n"):
        if not line.startswith(SIGNATURE_PREFIX):
            raise NoteError(f"signature line {line!r} does not start with an em dash")
        name, _, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            raise NoteError(f"signature of {name!r} is not base64") from exc
        if len(raw) < 5:
            raise NoteError(f"signature of {name!r} is too short")
        signatures.append((name, raw[:4], raw[4:]))
    if not signatures:
        raise NoteError("the note carries no signature")
    return text, signatures


def note_open(note: str, keys: list[VerifierKey]) -> tuple[str, VerifierKey]:
    """The text of a note that one of the pinned keys signed, with that key; NoteError otherwise.

    Signatures by keys that are not pinned are ignored, as C2SP says; a signature that claims a
    pinned key's name and id but does not verify is an error, not something to skip.
    """
    text, signatures = note_split(note)
    pinned = {(key.name, key.key_id): key for key in keys}
    for name, claimed_id, signature in signatures:
        key = pinned.get((name, claimed_id))
        if key is None:
            continue
        if not key.verifies(text.encode(), signature):
            raise NoteError(f"the signature by {name}+{claimed_id.hex()} does not verify")
        return text, key
    names = ", ".join(f"{name}+{claimed_id.hex()}" for name, claimed_id, _ in signatures)
    raise NoteError(f"no pinned key signed this note (signed by {names})")
