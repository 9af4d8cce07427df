"""Personal data at rest: per-subject data keys wrapped by the master key, AES-GCM, keyed
lookups and salted commitments. Destroying a subject's key (crypto-shredding) erases its data."""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from timestamping import canonical

NONCE_SIZE = 12
KEY_SIZE = 32


class VaultError(ValueError):
    """Data that does not decrypt: a wrong key, an erased subject or tampered ciphertext."""


def master_key_text(key: bytes) -> str:
    return base64.b64encode(key).decode()


@functools.lru_cache(maxsize=4)
def _decode(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except binascii.Error as exc:
        raise ImproperlyConfigured("the master key is not base64") from exc
    if len(key) != KEY_SIZE:
        raise ImproperlyConfigured("the master key is not 32 bytes")
    return key


@functools.lru_cache(maxsize=4)
def _read_file(path: str, mtime_ns: int) -> bytes:
    """Read once per version of the file."""
    return _decode(Path(path).read_text())


def master_key() -> bytes:
    """From VERIDICT_MASTER_KEY, else the file VERIDICT_MASTER_KEY_FILE names; never the DB."""
    if settings.MASTER_KEY:
        return _decode(settings.MASTER_KEY)
    path = Path(settings.MASTER_KEY_FILE)
    try:
        return _read_file(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError as exc:
        raise ImproperlyConfigured(
            f"no master key at {path}: run `python manage.py create_master_key`"
        ) from exc


def _derived(purpose: bytes) -> bytes:
    return _derive(purpose, master_key())


@functools.lru_cache(maxsize=16)
def _derive(purpose: bytes, key: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE, salt=None, info=purpose).derive(key)


def _encrypt(key: bytes, plaintext: bytes, context: bytes) -> bytes:
    nonce = os.urandom(NONCE_SIZE)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, context)


def _decrypt(key: bytes, sealed: bytes, context: bytes) -> bytes:
    try:
        return AESGCM(key).decrypt(sealed[:NONCE_SIZE], sealed[NONCE_SIZE:], context)
    except (InvalidTag, ValueError) as exc:
        raise VaultError("ciphertext does not decrypt under this key and context") from exc


def data_key_new() -> bytes:
    return secrets.token_bytes(KEY_SIZE)


def data_key_wrap(data_key: bytes, *, context: bytes) -> bytes:
    """The data key encrypted under a key derived from the master key; context binds it to its
    row, so a wrapped key copied to another subject does not open."""
    return _encrypt(_derived(b"veridict/wrap/v1"), data_key, context)


def data_key_unwrap(wrapped: bytes, *, context: bytes) -> bytes:
    return _decrypt(_derived(b"veridict/wrap/v1"), bytes(wrapped), context)


def seal_json(data_key: bytes, value: Any, *, context: bytes) -> bytes:
    return _encrypt(data_key, canonical.dumps(value), context)


def open_json(data_key: bytes, sealed: bytes, *, context: bytes) -> Any:
    return json.loads(_decrypt(data_key, bytes(sealed), context))


def system_lookup(*, purpose: bytes, system_id: int, value: str) -> bytes:
    """A keyed hash of a value an AI system names someone or something by, per system and
    purpose: what is stored and searched instead of the value. Per system, so that two systems'
    numbering of the same person cannot be matched; keyed, so that a guessed value can be
    tested only by the master key's holder."""
    return keyed_digest(purpose=purpose, data=str(system_id).encode() + b"\x00" + value.encode())


def system_stream(*, system_id: int) -> str:
    """The opaque stream label of an AI system's log (docs/DESIGN.md, Formats): a keyed hash of
    its id, so that batch headers, which list every stream a batch touched, do not name private
    systems. 128 bits: no two systems share a label."""
    return keyed_digest(purpose=b"veridict/system-stream", data=str(system_id).encode()).hex()[:32]


def subject_lookup(*, system_id: int, reference: str) -> bytes:
    """A keyed hash of a subject reference, per system: the reference itself is never stored."""
    return system_lookup(
        purpose=b"veridict/subject-lookup/v1", system_id=system_id, value=reference
    )


def client_id_lookup(*, system_id: int, client_decision_id: str) -> bytes:
    """A keyed hash of a decision's client id: it stays unique and findable (retries, the API's
    ?client_id=), while the id itself is kept only in the decision's personal part."""
    return system_lookup(
        purpose=b"veridict/client-decision-id/v1", system_id=system_id, value=client_decision_id
    )


def idempotency_lookup(*, system_id: int, key: str) -> bytes:
    """A keyed hash of an Idempotency-Key, which is stored nowhere else."""
    return system_lookup(purpose=b"veridict/idempotency-key/v1", system_id=system_id, value=key)


def lookup_unlinked() -> bytes:
    """What replaces a lookup at erasure: random, so that not even the master key's holder can
    match the row to a guessed value any more, and unique like the lookup it replaces."""
    return secrets.token_bytes(32)


def commitment(*, salt: bytes, value: Any) -> str:
    """SHA-256(salt || RFC 8785 bytes of value), hex: binds a value without revealing it; the
    random salt keeps small-domain values (a sex, an age band) from being guessed."""
    return hashlib.sha256(salt + canonical.dumps(value)).hexdigest()


def salt_new() -> bytes:
    return secrets.token_bytes(32)


def keyed_digest(*, purpose: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 under a key derived from the master key for this purpose."""
    return hmac.new(_derived(purpose), data, hashlib.sha256).digest()
