"""Offline verification of RFC 3161 time-stamps with the pinned TSA CA."""

from __future__ import annotations

import hashlib
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from asn1crypto import cms
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from veridict_verify.timestamp import TimestampError, timestamp_verify

from timestamping import tsa

OPENSSL = "/usr/bin/openssl"
BODY = b"veridict.local/log\n7\nq6Z3xJ7n8y2tZ3V1fQW0cKfY0b9m6H3v9m8xq0rGk6E=\n"


def tsa_make(directory: Path) -> SimpleNamespace:
    files = SimpleNamespace(
        key=directory / "tsa-key.pem", cert=directory / "tsa-cert.pem", ca=directory / "tsa-ca.pem"
    )
    tsa.tsa_create(key_file=files.key, cert_file=files.cert, ca_cert_file=files.ca)
    return files


@pytest.fixture
def ca_pem(tmp_path: Path, settings) -> bytes:
    """Makes the built-in TSA stamp with a fresh CA; returns that CA's certificate."""
    files = tsa_make(tmp_path / "keys")
    settings.TSA_KEY_FILE = files.key
    settings.TSA_CERT_FILE = files.cert
    settings.TSA_CA_CERT_FILE = files.ca
    return files.ca.read_bytes()


def stamp(message: bytes, **kwargs) -> bytes:
    return tsa.tsa_stamp(hashlib.sha256(message).digest(), **kwargs)


def flip(data: bytes, index: int) -> bytes:
    flipped = bytearray(data)
    flipped[index] ^= 0x01
    return bytes(flipped)


def signer_info(tsr: bytes) -> cms.SignerInfo:
    return tsa.TimeStampResp.load(tsr)["time_stamp_token"]["content"]["signer_infos"][0]


# --- What verifies -------------------------------------------------------------------------------


def test_a_fresh_stamp_verifies_and_gives_its_gen_time(ca_pem):
    gen_time = timestamp_verify(stamp(BODY), message=BODY, ca_pem=ca_pem)

    assert gen_time.tzinfo is not None and gen_time.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - gen_time) < timedelta(seconds=10)


def test_gen_time_comes_back_to_the_second(ca_pem):
    now = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    assert timestamp_verify(stamp(BODY, now=now), message=BODY, ca_pem=ca_pem) == now.replace(
        microsecond=0
    )


def test_a_ca_bundle_holding_the_pinned_ca_among_others_is_accepted(ca_pem, tmp_path):
    other_ca = tsa_make(tmp_path / "other").ca.read_bytes()

    assert timestamp_verify(stamp(BODY), message=BODY, ca_pem=other_ca + ca_pem + ca_pem)


def test_a_stamp_made_by_openssl_as_the_tsa_verifies(tmp_path):
    # An independent producer: OpenSSL's own TSA, signing with a key and certificate from
    # tsa_create, answers an OpenSSL request.
    files = tsa_make(tmp_path / "keys")
    (tmp_path / "body.txt").write_bytes(BODY)
    (tmp_path / "tsa.cnf").write_text(
        "[tsa]\ndefault_tsa = builtin\n[builtin]\n"
        f"serial = {tmp_path / 'serial'}\ndefault_policy = 1.2.3.4.1\ndigests = sha256\n"
        "signer_digest = sha256\ness_cert_id_alg = sha256\naccuracy = secs:1\n"
    )

    def run(*args: str | Path) -> None:
        subprocess.run([OPENSSL, *map(str, args)], capture_output=True, check=True, cwd=tmp_path)

    run("ts", "-query", "-data", "body.txt", "-sha256", "-cert", "-out", "request.tsq")
    run(
        "ts", "-reply", "-config", "tsa.cnf", "-queryfile", "request.tsq",
        "-inkey", files.key, "-signer", files.cert, "-out", "answer.tsr",
    )  # fmt: skip
    tsr = (tmp_path / "answer.tsr").read_bytes()

    assert timestamp_verify(tsr, message=BODY, ca_pem=files.ca.read_bytes())
    with pytest.raises(TimestampError, match="different message"):
        timestamp_verify(tsr, message=BODY + b"!", ca_pem=files.ca.read_bytes())


def openssl_chain_stamp(directory: Path, chain: SimpleNamespace, message: bytes) -> bytes:
    """An answer of OpenSSL's TSA that embeds the whole chain (TSA, intermediate, root), in
    chain order as commercial TSAs send it: not the DER order of a SET OF."""
    (directory / "body.txt").write_bytes(message)
    (directory / "serial").write_text("01\n")
    (directory / "tsa.cnf").write_text(
        "[tsa]\ndefault_tsa = chain\n[chain]\n"
        f"serial = {directory / 'serial'}\nsigner_cert = {chain.cert}\nsigner_key = {chain.key}\n"
        f"certs = {chain.chain}\ndefault_policy = 1.2.3.4.1\ndigests = sha256\n"
        "signer_digest = sha256\ness_cert_id_alg = sha256\naccuracy = secs:1\n"
    )

    def run(*args: str | Path) -> None:
        subprocess.run([OPENSSL, *map(str, args)], capture_output=True, check=True, cwd=directory)

    run("ts", "-query", "-data", "body.txt", "-sha256", "-cert", "-out", "request.tsq")
    run("ts", "-reply", "-config", "tsa.cnf", "-queryfile", "request.tsq", "-out", "answer.tsr")
    return (directory / "answer.tsr").read_bytes()


def test_a_stamp_carrying_a_chain_of_three_verifies_against_the_root(tsa_chain, tmp_path):
    tsr = openssl_chain_stamp(tmp_path, tsa_chain, BODY)
    certificates = tsa.TimeStampResp.load(tsr)["time_stamp_token"]["content"]["certificates"]
    assert len(certificates) == 3

    gen_time = timestamp_verify(tsr, message=BODY, ca_pem=tsa_chain.root.read_bytes())

    assert abs(datetime.now(UTC) - gen_time) < timedelta(seconds=10)
    with pytest.raises(TimestampError, match="different message"):
        timestamp_verify(tsr, message=BODY + b"!", ca_pem=tsa_chain.root.read_bytes())


def test_a_chain_that_does_not_lead_to_the_pinned_root_is_refused(tsa_chain, tmp_path, ca_pem):
    tsr = openssl_chain_stamp(tmp_path, tsa_chain, BODY)
    # The root the token itself carries is not trusted for being there; nor is an intermediate.
    for pinned in (ca_pem, tsa_chain.intermediate.read_bytes()):
        with pytest.raises(TimestampError, match="not signed by the pinned TSA CA"):
            timestamp_verify(tsr, message=BODY, ca_pem=pinned)


@hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(message=st.binary(), other=st.binary())
def test_a_stamp_verifies_for_its_own_message_and_for_no_other(ca_pem, message, other):
    assume(message != other)
    tsr = stamp(message)

    assert timestamp_verify(tsr, message=message, ca_pem=ca_pem)
    with pytest.raises(TimestampError, match="covers a different message"):
        timestamp_verify(tsr, message=other, ca_pem=ca_pem)


# --- What does not -------------------------------------------------------------------------------


def test_a_stamp_does_not_verify_for_a_different_message(ca_pem):
    with pytest.raises(TimestampError, match="the time-stamp covers a different message"):
        timestamp_verify(stamp(BODY), message=BODY.replace(b"7", b"8"), ca_pem=ca_pem)


def test_a_stamp_does_not_verify_against_a_ca_that_did_not_issue_the_tsa(ca_pem, tmp_path):
    other_ca = tsa_make(tmp_path / "other").ca.read_bytes()

    with pytest.raises(TimestampError, match="not signed by the pinned TSA CA"):
        timestamp_verify(stamp(BODY), message=BODY, ca_pem=other_ca)


def test_a_flipped_byte_in_the_signature_is_detected(ca_pem):
    tsr = stamp(BODY)
    signature = signer_info(tsr)["signature"].native
    at = tsr.index(signature) + len(signature) - 1

    with pytest.raises(TimestampError, match="not signed by the pinned TSA CA"):
        timestamp_verify(flip(tsr, at), message=BODY, ca_pem=ca_pem)


def test_a_flipped_byte_in_the_gen_time_is_detected(ca_pem):
    now = datetime(2031, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    tsr = stamp(BODY, now=now)
    at = tsr.index(b"20310203040506.789012Z") + 11  # a digit of the minutes

    with pytest.raises(TimestampError, match="not signed by the pinned TSA CA"):
        timestamp_verify(flip(tsr, at), message=BODY, ca_pem=ca_pem)


def test_a_stamp_edited_to_cover_another_message_is_detected(ca_pem):
    forged = stamp(BODY).replace(
        hashlib.sha256(BODY).digest(), hashlib.sha256(b"another body").digest()
    )

    with pytest.raises(TimestampError, match="not signed by the pinned TSA CA"):
        timestamp_verify(forged, message=b"another body", ca_pem=ca_pem)


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(in_signature=st.booleans(), position=st.integers(min_value=0), bit=st.integers(0, 7))
def test_no_flipped_bit_in_the_tst_info_or_the_signature_goes_unnoticed(
    ca_pem, in_signature, position, bit
):
    # Other bytes of a token are not all covered by the signature (rfc3161-client ignores, for
    # one, the SignerInfo's algorithm OID); these two are what a forger would have to change.
    tsr = stamp(BODY)
    token = tsa.TimeStampResp.load(tsr)["time_stamp_token"]["content"]
    region = (
        signer_info(tsr)["signature"].native
        if in_signature
        else token["encap_content_info"]["content"].contents
    )
    at = tsr.index(region) + position % len(region)
    tampered = bytearray(tsr)
    tampered[at] ^= 1 << bit

    with pytest.raises(TimestampError):
        timestamp_verify(bytes(tampered), message=BODY, ca_pem=ca_pem)


@pytest.mark.parametrize(
    "garbage",
    [b"", b"garbage", bytes(range(256)), b"-----BEGIN CERTIFICATE-----\n", b"\x30\x03\x02\x01\x00"],
    ids=["empty", "text", "bytes", "pem", "status-only sequence"],
)
def test_garbage_is_not_a_time_stamp(ca_pem, garbage):
    with pytest.raises(TimestampError):
        timestamp_verify(garbage, message=BODY, ca_pem=ca_pem)


def test_a_bare_token_is_refused_with_a_hint(ca_pem):
    token = tsa.TimeStampResp.load(stamp(BODY))["time_stamp_token"].dump()

    with pytest.raises(TimestampError, match="whole DER response"):
        timestamp_verify(token, message=BODY, ca_pem=ca_pem)


def test_a_rejection_is_reported_with_the_tsa_reason(ca_pem):
    rejection = tsa.tsa_respond(b"not a request")

    with pytest.raises(TimestampError, match="did not grant.*not a DER TimeStampReq"):
        timestamp_verify(rejection, message=BODY, ca_pem=ca_pem)


def test_a_stamp_without_the_tsa_certificate_says_why_it_cannot_be_checked(ca_pem, tmp_path):
    (tmp_path / "body.txt").write_bytes(BODY)
    request = subprocess.run(
        [OPENSSL, "ts", "-query", "-data", tmp_path / "body.txt", "-sha256"],
        capture_output=True,
        check=True,
    ).stdout

    with pytest.raises(TimestampError, match="does not carry the TSA certificate"):
        timestamp_verify(tsa.tsa_respond(request), message=BODY, ca_pem=ca_pem)


def test_a_stamp_over_another_digest_than_sha256_is_refused(ca_pem, tmp_path):
    (tmp_path / "body.txt").write_bytes(BODY)
    request = subprocess.run(
        [OPENSSL, "ts", "-query", "-data", tmp_path / "body.txt", "-sha512", "-cert"],
        capture_output=True,
        check=True,
    ).stdout

    with pytest.raises(TimestampError, match="not SHA-256"):
        timestamp_verify(tsa.tsa_respond(request), message=BODY, ca_pem=ca_pem)


def test_a_pinned_ca_that_is_not_pem_is_refused(ca_pem):
    with pytest.raises(TimestampError, match="not a PEM certificate"):
        timestamp_verify(stamp(BODY), message=BODY, ca_pem=b"not a certificate")
