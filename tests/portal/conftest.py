"""Fixtures of the portal's tests: a public AI system and a small sealed log."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest

from audit.models import AISystem, Document
from audit.services.documents import document_register
from tests.audit.conftest import AISystemFactory
from timestamping.services import entry_append


@pytest.fixture
def public_system(db) -> AISystem:
    return AISystemFactory(name="CV screener", slug="cv-screener", is_public=True)


@pytest.fixture
def register(public_system) -> Callable[..., Document]:
    """Registers bytes (or a digest) as a document of the public system."""

    def run(content: bytes = b"", *, sha256: str | None = None, **kwargs) -> Document:
        digest = sha256 or hashlib.sha256(content).hexdigest()
        system = kwargs.pop("system", public_system)
        document, _ = document_register(system=system, sha256=digest, **kwargs)
        return document

    return run


@pytest.fixture
def filled_log(seal) -> Callable[[int, int], list]:
    """`batches` sealed batches of `per_batch` plain entries each; the batches, oldest first."""

    def run(batches: int, per_batch: int = 1) -> list:
        sealed = []
        for number in range(batches):
            for n in range(per_batch):
                entry_append(kind="test", envelope={"batch": number, "n": n})
            sealed.append(seal())
        return sealed

    return run
