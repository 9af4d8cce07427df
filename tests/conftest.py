"""Shared fixtures: keys for the run, service checks, the append-only bypass for flushes."""

from __future__ import annotations

import contextlib
import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.db import connection
from django.test import override_settings

from timestamping import keys

# Set by .ci/run: a test that would skip because a service is missing fails instead.
REQUIRE_SERVICES = os.environ.get("VERIDICT_REQUIRE_SERVICES") == "1"


def service_reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def missing(message: str) -> None:
    """A service or program a test needs is missing: skips on a laptop, fails under .ci/run."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} (VERIDICT_REQUIRE_SERVICES=1)")
    pytest.skip(message)


def require_service(name: str, host: str, port: int) -> None:
    if not service_reachable(host, port):
        missing(f"{name} is not reachable at {host}:{port}")


def pytest_configure(config: pytest.Config) -> None:
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("postgresql"):
        host, port = database.get("HOST") or "127.0.0.1", int(database.get("PORT") or 5432)
        if not service_reachable(host, port):
            message = f"PostgreSQL is not reachable at {host}:{port}"
            if REQUIRE_SERVICES:
                raise pytest.UsageError(f"{message} (VERIDICT_REQUIRE_SERVICES=1)")
            pytest.exit(f"{message}: the PostgreSQL pass is skipped", returncode=0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from django.conf import settings

    vendor = (
        "postgres" if settings.DATABASES["default"]["ENGINE"].endswith("postgresql") else "sqlite"
    )
    other = "sqlite" if vendor == "postgres" else "postgres"
    for item in items:
        if item.get_closest_marker(other):
            item.add_marker(pytest.mark.skip(reason=f"runs in the {other} pass of make test"))


@pytest.fixture(scope="session", autouse=True)
def ledger_keys(tmp_path_factory: pytest.TempPathFactory):
    """A log key and a built-in TSA for the whole run, also handed to subprocesses through the
    environment."""
    from audit import vault
    from timestamping import tsa

    folder = tmp_path_factory.mktemp("keys")
    paths = {
        "LOG_SIGNING_KEY_FILE": folder / "log-signing.pem",
        "TSA_KEY_FILE": folder / "tsa-key.pem",
        "TSA_CERT_FILE": folder / "tsa-cert.pem",
        "TSA_CA_CERT_FILE": folder / "tsa-ca.pem",
        "MASTER_KEY_FILE": folder / "master.key",
    }
    for name, path in paths.items():
        os.environ[f"VERIDICT_{name}"] = str(path)
    with override_settings(LOG_SIGNING_KEY="", MASTER_KEY="", **paths):
        keys.write_secret(
            paths["LOG_SIGNING_KEY_FILE"], keys.private_key_pem(Ed25519PrivateKey.generate())
        )
        keys.write_secret(
            paths["MASTER_KEY_FILE"], vault.master_key_text(vault.data_key_new()).encode()
        )
        tsa.tsa_create(
            key_file=paths["TSA_KEY_FILE"],
            cert_file=paths["TSA_CERT_FILE"],
            ca_cert_file=paths["TSA_CA_CERT_FILE"],
        )
        yield paths


@pytest.fixture(autouse=True)
def _published_keys_forgotten():
    """Each test starts from an empty database, so no key counts as published yet."""
    keys.published_keys.clear()


@pytest.fixture(autouse=True)
def _public_read_limits_out_of_the_way(settings):
    """The suite reads receipts and bias reports from one address far faster than a person does,
    and with REDIS_URL the counts outlive each test; the tests of those limits set their own."""
    settings.PORTAL_RATES = {**settings.PORTAL_RATES, "bias": "100000/s", "receipt": "100000/s"}


@pytest.fixture(autouse=True)
def _append_only_bypassed_for_flush(request: pytest.FixtureRequest):
    """Lets pytest-django's flush after a transactional test TRUNCATE the append-only tables."""
    marker = request.node.get_closest_marker("django_db")
    by_marker = marker is not None and marker.kwargs.get("transaction", False)
    if connection.vendor != "postgresql" or not (
        by_marker or "transactional_db" in request.fixturenames
    ):
        yield
        return
    # The database fixture must be set up first, so that its flush runs after this teardown.
    request.getfixturevalue("_django_db_helper" if by_marker else "transactional_db")
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = origin")
    yield
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")


@pytest.fixture
def tsa_ca_pem(ledger_keys: dict[str, Path]) -> bytes:
    return ledger_keys["TSA_CA_CERT_FILE"].read_bytes()


@pytest.fixture
def seal(django_capture_on_commit_callbacks):
    """batch_seal as the worker runs it: its after-commit stamp runs too (pytest-django's `db`
    wraps each test in a transaction that never commits)."""
    from timestamping.services import batch_seal

    def run(**kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return batch_seal(**kwargs)

    return run


def certificate_make(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key,
    *,
    ca: bool,
    server_name: str | None = None,
) -> x509.Certificate:
    """A CA certificate, or a leaf: a TLS server's for `server_name`, else a TSA's."""
    now = datetime.now(UTC)
    usage = dict.fromkeys(
        (
            "digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
            "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only",
        ),
        False,
    )  # fmt: skip
    usage.update(key_cert_sign=ca, crl_sign=ca, digital_signature=not ca)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(**usage), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )
    if server_name is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(server_name)]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True
        )
    return builder.sign(issuer_key, hashes.SHA256())


def tsa_chain_make(directory: Path) -> SimpleNamespace:
    """A commercial TSA's PKI in files: root CA → intermediate CA → TSA certificate, its key,
    and `chain.pem` (intermediate and root) for OpenSSL's `certs =` to embed in each answer."""
    directory.mkdir(parents=True, exist_ok=True)
    root_key, intermediate_key, tsa_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "abc")
    root = certificate_make("Chain Root CA", root_key, "Chain Root CA", root_key, ca=True)
    intermediate = certificate_make(
        "Chain Intermediate CA", intermediate_key, "Chain Root CA", root_key, ca=True
    )
    leaf = certificate_make(
        "Chain TSA", tsa_key, "Chain Intermediate CA", intermediate_key, ca=False
    )
    files = SimpleNamespace(
        root=directory / "root.pem",
        intermediate=directory / "intermediate.pem",
        cert=directory / "tsa-cert.pem",
        key=directory / "tsa-key.pem",
        chain=directory / "chain.pem",
    )
    pem = serialization.Encoding.PEM
    files.root.write_bytes(root.public_bytes(pem))
    files.intermediate.write_bytes(intermediate.public_bytes(pem))
    files.cert.write_bytes(leaf.public_bytes(pem))
    files.chain.write_bytes(intermediate.public_bytes(pem) + root.public_bytes(pem))
    files.key.write_bytes(
        tsa_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture
def tsa_chain(tmp_path: Path) -> SimpleNamespace:
    return tsa_chain_make(tmp_path / "chain-pki")


@pytest.fixture
def seq_gap():
    """Leaves `count` seqs unused before the next entry, as a rolled-back bulk of `count` records
    does. On PostgreSQL it is one: the sequence hands out numbers that a rollback does not return.
    SQLite's AUTOINCREMENT counter rolls back with the transaction, so there the counter is moved
    on by hand to the same effect."""
    import hashlib

    from django.db import transaction
    from django.utils import timezone

    from timestamping.models import Entry

    class RolledBack(Exception):
        pass

    def make(count: int) -> None:
        if connection.vendor == "postgresql":
            now = timezone.now()
            with contextlib.suppress(RolledBack), transaction.atomic():
                Entry.objects.bulk_create(
                    Entry(
                        kind="rolled-back",
                        received_at=now,
                        canonical=b"{}",
                        leaf_hash=hashlib.sha256(b"rolled-back %d" % n).digest(),
                        set_note="",
                    )
                    for n in range(count)
                )
                raise RolledBack
        else:
            with connection.cursor() as cursor:
                cursor.execute(
                    "UPDATE sqlite_sequence SET seq = seq + %s WHERE name = %s",
                    [count, Entry._meta.db_table],
                )

    return make
