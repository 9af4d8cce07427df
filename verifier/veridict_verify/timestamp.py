"""Offline checks of RFC 3161 time-stamps against a pinned TSA CA certificate."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from cryptography import x509
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")
GENERALIZED_TIME_TAG = 0x18


class TimestampError(ValueError):
    """A time-stamp that does not prove what it claims; the message says what to check."""


def timestamp_verify(tsr_der: bytes, *, message: bytes, ca_pem: bytes) -> datetime:
    """Checks a DER TimeStampResp over SHA-256(message) against the pinned CA; returns genTime."""
    roots = _pinned_roots(ca_pem)
    response = _decode(tsr_der)

    verifier = VerifierBuilder()
    for root in roots:
        verifier = verifier.add_root_certificate(root)
    imprint = response.tst_info.message_imprint
    try:
        # Given the token's own imprint, this checks only who signed it; which message it covers
        # is checked below, so that each failure gets its own explanation.
        verifier.build().verify(response, imprint.message)
    except VerificationError as exc:
        raise TimestampError(f"the time-stamp is not signed by the pinned TSA CA ({exc})") from exc

    if imprint.hash_algorithm != SHA256_OID:
        raise TimestampError(
            f"the time-stamp covers a digest made with {imprint.hash_algorithm.dotted_string}, "
            "not SHA-256 as Veridict time-stamps do"
        )
    if not hmac.compare_digest(imprint.message, hashlib.sha256(message).digest()):
        raise TimestampError("the time-stamp covers a different message")
    return _gen_time(response.tst_info.as_bytes())


def _pinned_roots(ca_pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise TimestampError(
            "the pinned TSA CA is not a PEM certificate: pass the CA certificate from the keys page"
        ) from exc
    # rfc3161-client refuses the same root twice, and a PEM bundle may repeat one.
    return list(dict.fromkeys(certificates))


def _decode(tsr_der: bytes) -> TimeStampResponse:
    try:
        response = decode_timestamp_response(tsr_der)
    except ValueError as exc:
        raise TimestampError(
            f"the time-stamp is not a DER RFC 3161 TimeStampResp ({exc}); a bare token or "
            "base64 text must be turned into the whole DER response first"
        ) from exc
    if response.status != PKIStatus.GRANTED:
        reasons = "; ".join(response.status_string) or "no reason given"
        raise TimestampError(
            f"the TSA did not grant this time-stamp (status {response.status}: {reasons})"
        )
    try:
        # The token is parsed lazily, on first use: this is where a malformed one shows.
        response.tst_info  # noqa: B018
        certificates = response.signed_data.certificates
    except ValueError as exc:
        raise TimestampError(f"the time-stamp's token is missing or malformed ({exc})") from exc
    if not certificates:
        raise TimestampError(
            "the time-stamp does not carry the TSA certificate (it was requested without "
            "certReq), so it cannot be checked against the pinned CA"
        )
    return response


def _gen_time(tst_info_der: bytes) -> datetime:
    # rfc3161-client drops the fraction of genTime, and the built-in TSA stamps to the
    # microsecond, so genTime is read from the (already verified) TSTInfo itself:
    # TSTInfo ::= SEQUENCE { version, policy, messageImprint, serialNumber, genTime, ... }
    try:
        _, offset, _ = _der_element(tst_info_der, 0)
        for _ in range(4):
            _, _, offset = _der_element(tst_info_der, offset)
        tag, start, end = _der_element(tst_info_der, offset)
        if tag != GENERALIZED_TIME_TAG:
            raise ValueError("genTime is not a GeneralizedTime")
        text = tst_info_der[start:end].decode("ascii")
        # DER: YYYYMMDDHHMMSS, an optional fraction without trailing zeros, then Z.
        if not text.endswith("Z"):
            raise ValueError("genTime is not in UTC")
        seconds = datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        fraction = text[14:-1]
        if fraction and (fraction[0] != "." or not fraction[1:].isdigit()):
            raise ValueError("genTime has a malformed fraction")
        microseconds = int(fraction[1:7].ljust(6, "0")) if fraction else 0
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        raise TimestampError(f"the time-stamp's genTime cannot be read ({exc})") from exc
    return seconds.replace(microsecond=microseconds)


def _der_element(der: bytes, offset: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the DER element at offset."""
    tag, length = der[offset], der[offset + 1]
    start = offset + 2
    if length & 0x80:
        size = length & 0x7F
        length = int.from_bytes(der[start : start + size], "big")
        start += size
    if start + length > len(der):
        raise ValueError("a DER element runs past the end of the TSTInfo")
    return tag, start, start + length
