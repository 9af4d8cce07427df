"""The log's Ed25519 signing key: loaded from the environment or a file, never from the database."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from veridict_verify.note import VerifierKey, note_sign


def private_key_pem(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_secret(path: Path, content: bytes) -> None:
    """Writes a file only its owner can read, creating it; never overwrites."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(content)


@functools.lru_cache(maxsize=8)
def _load(pem: bytes) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ImproperlyConfigured("the log signing key is not an Ed25519 key")
    return key


@functools.lru_cache(maxsize=8)
def _load_file(path: str, mtime_ns: int) -> Ed25519PrivateKey:
    """Read once per version of the file: a rotation writes a new file, with a new mtime."""
    return _load(Path(path).read_bytes())


def signing_key() -> Ed25519PrivateKey:
    if settings.LOG_SIGNING_KEY:
        return _load(settings.LOG_SIGNING_KEY.encode())
    path = Path(settings.LOG_SIGNING_KEY_FILE)
    try:
        return _load_file(str(path), path.stat().st_mtime_ns)
    except FileNotFoundError as exc:
        raise ImproperlyConfigured(
            f"no log signing key at {path}: run `python manage.py create_log_key`"
        ) from exc


def verifier_key() -> VerifierKey:
    return VerifierKey.from_public_key(settings.LOG_ORIGIN, signing_key().public_key())


def signer() -> Callable[[str], str]:
    """Signs notes with the current log key, its public half published first: taken once, it
    signs many notes (a bulk request's SETs) with one key load and one publication check."""
    key = signing_key()
    log_key_publish(VerifierKey.from_public_key(settings.LOG_ORIGIN, key.public_key()))
    return lambda text: note_sign(text, settings.LOG_ORIGIN, key)


def sign(text: str) -> str:
    """Signs a note with the current log key, after publishing its public half."""
    return signer()(text)


# Verifier keys known to be published in committed rows; rows are never deleted.
published_keys: set[str] = set()


def log_key_publish(key: VerifierKey) -> None:
    """Records a public key before its first signature, so that nothing signed goes unpublished."""
    from django.db import transaction
    from django.utils import timezone

    from timestamping.models import LogKey

    verifier = str(key)
    if verifier in published_keys:
        return
    LogKey.objects.get_or_create(
        key_id=key.key_id.hex(),
        defaults={"verifier_key": verifier, "first_used_at": timezone.now()},
    )
    transaction.on_commit(lambda: published_keys.add(verifier))
