"""The built-in RFC 3161 TSA: its certificates, its answers, and what OpenSSL makes of them."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from asn1crypto import cms, tsp
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from timestamping import tsa

OPENSSL = "/usr/bin/openssl"


def tsa_make(directory: Path, **extra: Path) -> SimpleNamespace:
    files = SimpleNamespace(
        key=directory / "tsa-key.pem", cert=directory / "tsa-cert.pem", ca=directory / "tsa-ca.pem"
    )
    tsa.tsa_create(key_file=files.key, cert_file=files.cert, ca_cert_file=files.ca, **extra)
    return files


def settings_point_at(settings, files: SimpleNamespace) -> None:
    settings.TSA_KEY_FILE = files.key
    settings.TSA_CERT_FILE = files.cert
    settings.TSA_CA_CERT_FILE = files.ca


@pytest.fixture
def tsa_files(tmp_path: Path, settings) -> SimpleNamespace:
    files = tsa_make(tmp_path / "keys")
    settings_point_at(settings, files)
    return files


def openssl(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, cwd=cwd, check=False
    )


def openssl_query(body: Path, *flags: str) -> bytes:
    return subprocess.run(
        [OPENSSL, "ts", "-query", "-data", str(body), *flags], capture_output=True, check=True
    ).stdout


def signed_data(answer: bytes) -> cms.SignedData:
    return tsa.TimeStampResp.load(answer)["time_stamp_token"]["content"]


def tst_info(answer: bytes) -> tsp.TSTInfo:
    return signed_data(answer)["encap_content_info"]["content"].parsed


def status(answer: bytes) -> dict:
    return tsa.TimeStampResp.load(answer)["status"].native


def request_der(
    *, algorithm: str = "sha256", digest: bytes = b"\x11" * 32, **fields: object
) -> bytes:
    return tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": algorithm},
                "hashed_message": digest,
            },
            **fields,
        }
    ).dump()


def stamp_files(directory: Path, body: bytes) -> tuple[Path, Path]:
    body_file, tsr_file = directory / "body.txt", directory / "anchor.tsr"
    body_file.write_bytes(body)
    tsr_file.write_bytes(tsa.tsa_stamp(hashlib.sha256(body).digest()))
    return body_file, tsr_file


# --- OpenSSL checks the stamps -------------------------------------------------------------------


def test_openssl_verifies_a_stamp_of_the_body(tsa_files, tmp_path):
    body_file, tsr_file = stamp_files(tmp_path, b"veridict.local/log\n42\nroot\n")

    result = openssl(
        "ts", "-verify", "-data", body_file, "-in", tsr_file, "-CAfile", tsa_files.ca, cwd=tmp_path
    )

    assert result.returncode == 0, result.stderr
    assert "Verification: OK" in result.stdout


def test_openssl_fails_the_stamp_when_one_byte_of_the_body_changes(tsa_files, tmp_path):
    body_file, tsr_file = stamp_files(tmp_path, b"veridict.local/log\n42\nroot\n")
    body_file.write_bytes(b"veridict.local/log\n43\nroot\n")

    result = openssl(
        "ts", "-verify", "-data", body_file, "-in", tsr_file, "-CAfile", tsa_files.ca, cwd=tmp_path
    )

    assert result.returncode != 0
    assert "FAILED" in result.stdout


def test_openssl_fails_the_stamp_against_another_tsa_ca(tsa_files, tmp_path):
    body_file, tsr_file = stamp_files(tmp_path, b"body\n")
    other = tsa_make(tmp_path / "other")

    result = openssl(
        "ts", "-verify", "-data", body_file, "-in", tsr_file, "-CAfile", other.ca, cwd=tmp_path
    )

    assert result.returncode != 0
    assert "FAILED" in result.stdout


def test_openssl_shows_the_policy_the_nonce_and_the_embedded_tsa_certificate(tsa_files, tmp_path):
    _, tsr_file = stamp_files(tmp_path, b"body\n")
    info = tst_info(tsr_file.read_bytes())

    text = openssl("ts", "-reply", "-in", tsr_file, "-text", cwd=tmp_path).stdout
    openssl("ts", "-reply", "-in", tsr_file, "-token_out", "-out", "token.der", cwd=tmp_path)
    certs = openssl("pkcs7", "-inform", "DER", "-in", "token.der", "-print_certs", cwd=tmp_path)

    assert "Status: Granted." in text
    assert f"Policy OID: {tsa.POLICY_OID}" in text
    nonce = re.search(r"Nonce: 0x([0-9A-F]+)", text)
    assert nonce is not None
    assert int(nonce.group(1), 16) == info["nonce"].native
    assert "subject=CN = Veridict built-in TSA\n" in certs.stdout
    assert certs.stdout.count("-----BEGIN CERTIFICATE-----") == 1


@pytest.mark.parametrize(
    ("digest_flag", "cert_req"),
    [("-sha256", False), ("-sha256", True), ("-sha384", True), ("-sha512", False)],
)
def test_openssl_requests_are_answered_with_the_certificate_only_when_asked(
    tsa_files, tmp_path, digest_flag, cert_req
):
    body_file = tmp_path / "body.txt"
    body_file.write_bytes(b"checkpoint body\n")
    flags = [digest_flag, "-no_nonce"] + (["-cert"] if cert_req else [])
    (tmp_path / "request.tsq").write_bytes(openssl_query(body_file, *flags))

    answer = tsa.tsa_respond((tmp_path / "request.tsq").read_bytes())
    (tmp_path / "answer.tsr").write_bytes(answer)
    certificates = signed_data(answer)["certificates"]

    assert status(answer)["status"] == "granted"
    assert tst_info(answer)["nonce"].native is None
    if cert_req:
        assert len(certificates) == 1
        assert certificates[0].chosen.dump() == x509.load_pem_x509_certificate(
            tsa_files.cert.read_bytes()
        ).public_bytes(serialization.Encoding.DER)
    else:
        assert not certificates
    # Without the certificate in the answer, OpenSSL needs it handed over with -untrusted.
    untrusted = [] if cert_req else ["-untrusted", tsa_files.cert]
    result = openssl(
        "ts", "-verify", "-queryfile", "request.tsq", "-in", "answer.tsr",
        "-CAfile", tsa_files.ca, *untrusted, cwd=tmp_path,
    )  # fmt: skip
    assert "Verification: OK" in result.stdout, result.stderr


def test_openssl_reads_a_rejection_and_its_reason(tsa_files, tmp_path):
    body_file = tmp_path / "body.txt"
    body_file.write_bytes(b"body\n")
    answer = tsa.tsa_respond(openssl_query(body_file, "-sha1", "-cert"))
    (tmp_path / "answer.tsr").write_bytes(answer)

    text = openssl("ts", "-reply", "-in", "answer.tsr", "-text", cwd=tmp_path).stdout

    assert "Status: Rejected." in text
    assert "sha1 is not accepted" in text
    assert "unrecognized or unsupported algorithm" in text


# --- Bad requests get rejections, never exceptions ----------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "fail_info"),
    [
        pytest.param(request_der(algorithm="sha1", digest=b"\x11" * 20), "bad_alg", id="sha1"),
        pytest.param(request_der(algorithm="md5", digest=b"\x11" * 16), "bad_alg", id="md5"),
        pytest.param(request_der(digest=b"\x11" * 31), "bad_data_format", id="short imprint"),
        pytest.param(
            request_der(algorithm="sha512", digest=b"\x11" * 32),
            "bad_data_format",
            id="sha512 with a sha256-long imprint",
        ),  # fmt: skip
        pytest.param(b"", "bad_data_format", id="empty"),
        pytest.param(b"not a request", "bad_data_format", id="garbage"),
        pytest.param(request_der() + b"\x00", "bad_data_format", id="trailing bytes"),
        pytest.param(request_der()[:-1], "bad_data_format", id="truncated"),
        pytest.param(
            request_der().replace(b"\x02\x01\x01", b"\x02\x01\x02", 1), "bad_request", id="v2"
        ),
        pytest.param(request_der(req_policy="1.2.3.4"), "unaccepted_policy", id="foreign policy"),
        pytest.param(
            request_der(
                extensions=[{"extn_id": "1.2.3.4", "critical": False, "extn_value": b"\x05\x00"}]
            ),
            "unaccepted_extensions",
            id="extension",
        ),
    ],
)
def test_a_bad_request_gets_a_rejection_naming_the_failure(tsa_files, request_bytes, fail_info):
    answer = tsa.tsa_respond(request_bytes)

    answered = tsa.TimeStampResp.load(answer, strict=True)
    assert answered["status"]["status"].native == "rejection"
    assert answered["status"]["fail_info"].native == {fail_info}
    assert answered["status"]["status_string"].native  # a reason a person can read
    assert answered["time_stamp_token"].native is None


def test_a_request_under_our_own_policy_is_granted(tsa_files):
    answer = tsa.tsa_respond(request_der(req_policy=tsa.POLICY_OID, nonce=7, cert_req=True))

    assert status(answer)["status"] == "granted"
    assert tst_info(answer)["nonce"].native == 7


def test_tsa_stamp_refuses_a_digest_that_is_not_sha256(tsa_files):
    with pytest.raises(ValueError, match="32 bytes"):
        tsa.tsa_stamp(b"\x00" * 20)


# --- What a granted stamp holds ------------------------------------------------------------------


def test_a_stamp_holds_the_policy_the_digest_and_gen_time_to_the_microsecond(tsa_files):
    digest = hashlib.sha256(b"body").digest()
    now = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)

    info = tst_info(tsa.tsa_stamp(digest, now=now))

    assert info["version"].native == "v1"
    assert info["policy"].native == tsa.POLICY_OID
    assert info["message_imprint"]["hash_algorithm"]["algorithm"].native == "sha256"
    assert info["message_imprint"]["hashed_message"].native == digest
    assert info["gen_time"].native == now
    assert info["accuracy"].native == {"seconds": 1, "millis": None, "micros": None}
    assert info["ordering"].native is False
    assert 0 < info["serial_number"].native < 2**128
    assert info["nonce"].native > 0


def test_gen_time_is_written_in_utc_whatever_zone_now_is_given_in(tsa_files):
    paris_noon = datetime(2031, 6, 1, 12, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))

    info = tst_info(tsa.tsa_stamp(b"\x00" * 32, now=paris_noon))

    assert info["gen_time"].native == datetime(2031, 6, 1, 10, 0, 0, 5, tzinfo=UTC)
    assert info["gen_time"].dump().endswith(b"100000.000005Z")


def test_signing_time_switches_to_generalized_time_from_2050(tsa_files):
    for year, choice in [(2049, "utc_time"), (2050, "generalized_time")]:
        answer = tsa.tsa_stamp(b"\x00" * 32, now=datetime(year, 12, 31, 23, 59, tzinfo=UTC))
        (signer,) = signed_data(answer)["signer_infos"]
        attributes = {attr["type"].native: attr["values"] for attr in signer["signed_attrs"]}
        (signing_time,) = attributes["signing_time"]

        assert signing_time.name == choice


def test_a_naive_now_is_refused(tsa_files):
    with pytest.raises(ValueError, match="aware"):
        tsa.tsa_stamp(b"\x00" * 32, now=datetime(2031, 1, 1))  # noqa: DTZ001


def test_every_stamp_has_its_own_serial_number_and_nonce(tsa_files):
    infos = [tst_info(tsa.tsa_stamp(b"\x00" * 32)) for _ in range(20)]

    assert len({info["serial_number"].native for info in infos}) == 20
    assert len({info["nonce"].native for info in infos}) == 20


def test_the_signature_binds_the_tsa_certificate_and_only_it_is_embedded(tsa_files):
    answer = signed_data(tsa.tsa_stamp(b"\x00" * 32))
    cert_der = x509.load_pem_x509_certificate(tsa_files.cert.read_bytes()).public_bytes(
        serialization.Encoding.DER
    )
    (signer,) = answer["signer_infos"]
    attributes = {attr["type"].native: attr["values"] for attr in signer["signed_attrs"]}
    (signing_certificate,) = attributes["signing_certificate_v2"]

    assert answer["version"].native == "v3"
    assert [cert.chosen.dump() for cert in answer["certificates"]] == [cert_der]
    assert signer["version"].native == "v1"
    assert signer["signature_algorithm"]["algorithm"].native == "sha256_ecdsa"
    assert signing_certificate["certs"][0]["cert_hash"].native == hashlib.sha256(cert_der).digest()
    assert set(attributes) == {
        "content_type",
        "message_digest",
        "signing_time",
        "signing_certificate_v2",
    }


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(digest=st.binary(min_size=32, max_size=32))
def test_every_stamp_covers_exactly_the_digest_it_was_given(tsa_files, digest):
    info = tst_info(tsa.tsa_stamp(digest))

    assert info["message_imprint"]["hashed_message"].native == digest


# --- Certificates and key files ------------------------------------------------------------------


def test_the_tsa_certificate_is_for_time_stamping_only_and_issued_by_the_ca(tsa_files):
    cert = x509.load_pem_x509_certificate(tsa_files.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(tsa_files.ca.read_bytes())

    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    assert eku.critical
    assert list(eku.value) == [ExtendedKeyUsageOID.TIME_STAMPING]
    key_usage = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert key_usage.value.digital_signature and not key_usage.value.key_cert_sign
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    cert.verify_directly_issued_by(ca)
    ca_constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert ca_constraints.critical and ca_constraints.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert cert.not_valid_after_utc - cert.not_valid_before_utc >= timedelta(days=3600)


def test_tsa_create_writes_private_keys_owner_only_and_keeps_the_ca_key_only_if_asked(tmp_path):
    without = tsa_make(tmp_path / "without")
    with_ca_key = tsa_make(tmp_path / "with", ca_key_file=tmp_path / "with" / "ca-key.pem")

    assert sorted(p.name for p in (tmp_path / "without").iterdir()) == [
        "tsa-ca.pem",
        "tsa-cert.pem",
        "tsa-key.pem",
    ]
    for key_file in (without.key, with_ca_key.key, tmp_path / "with" / "ca-key.pem"):
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert key_file.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    ca_key = serialization.load_pem_private_key(
        (tmp_path / "with" / "ca-key.pem").read_bytes(), password=None
    )
    ca = x509.load_pem_x509_certificate(with_ca_key.ca.read_bytes())
    assert ca_key.public_key() == ca.public_key()


def test_tsa_create_never_overwrites_a_file(tsa_files):
    before = tsa_files.key.read_bytes()

    with pytest.raises(FileExistsError):
        tsa.tsa_create(
            key_file=tsa_files.key,
            cert_file=tsa_files.cert.with_name("new-cert.pem"),
            ca_cert_file=tsa_files.ca.with_name("new-ca.pem"),
        )

    assert tsa_files.key.read_bytes() == before
    assert not tsa_files.cert.with_name("new-cert.pem").exists()


def test_missing_tsa_files_name_the_command_that_creates_them(tmp_path, settings):
    settings_point_at(settings, SimpleNamespace(
        key=tmp_path / "no-key.pem", cert=tmp_path / "no-cert.pem", ca=tmp_path / "no-ca.pem"
    ))  # fmt: skip

    with pytest.raises(ImproperlyConfigured, match="python manage.py create_tsa"):
        tsa.tsa_stamp(b"\x00" * 32)
    with pytest.raises(ImproperlyConfigured, match="python manage.py create_tsa"):
        tsa.tsa_ca_certificate_pem()


def test_the_published_ca_certificate_is_the_ca_file(tsa_files):
    assert tsa.tsa_ca_certificate_pem() == tsa_files.ca.read_text()


def test_replaced_tsa_files_are_used_without_a_restart(tsa_files, tmp_path):
    tsa.tsa_stamp(b"\x00" * 32)  # loads and caches the first TSA
    replacement = tsa_make(tmp_path / "replacement")
    for new, old in [(replacement.key, tsa_files.key), (replacement.cert, tsa_files.cert)]:
        os.replace(new, old)
        # Files written within one clock tick can share an mtime; make the change visible.
        mtime = old.stat().st_mtime_ns + 1_000_000_000
        os.utime(old, ns=(mtime, mtime))
    body_file, tsr_file = stamp_files(tmp_path, b"body\n")

    result = openssl(
        "ts", "-verify", "-data", body_file, "-in", tsr_file, "-CAfile", replacement.ca,
        cwd=tmp_path,
    )  # fmt: skip

    assert "Verification: OK" in result.stdout, result.stderr


# --- manage.py create_tsa ------------------------------------------------------------------------


def test_create_tsa_creates_the_files_once_and_then_changes_nothing(tmp_path, settings, capsys):
    files = SimpleNamespace(
        key=tmp_path / "keys" / "tsa-key.pem",
        cert=tmp_path / "keys" / "tsa-cert.pem",
        ca=tmp_path / "keys" / "tsa-ca.pem",
    )
    settings_point_at(settings, files)

    call_command("create_tsa")
    first = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in vars(files).values()}
    call_command("create_tsa")
    second = {path: (path.read_bytes(), path.stat().st_mtime_ns) for path in vars(files).values()}

    assert first == second
    assert stat.S_IMODE(files.key.stat().st_mode) == 0o600
    output = capsys.readouterr().out
    assert output.count(str(files.ca)) == 2
    assert "already" in output


def test_create_tsa_refuses_to_complete_a_half_present_tsa(tsa_files):
    key_before = tsa_files.key.read_bytes()
    tsa_files.cert.unlink()

    with pytest.raises(CommandError, match="tsa-cert.pem"):
        call_command("create_tsa")

    assert tsa_files.key.read_bytes() == key_before
    assert not tsa_files.cert.exists()
