"""Offline checks of RFC 3161 time-stamps against a pinned TSA CA certificate."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

from asn1crypto import tsp
from cryptography import x509
from rfc3161_client import (
    PKIStatus,
    TimeStampResponse,
    VerificationError,
    VerifierBuilder,
    decode_timestamp_response,
)

SHA256_OID = x509.ObjectIdentifier("2.16.840.1.101.3.4.2.1")


class TimestampError(ValueError):
    """A time-stamp that does not prove what it claims; the message says what to check."""


def timestamp_verify(tsr_der: bytes, *, message: bytes, ca_pem: bytes) -> datetime:
    """Checks a DER TimeStampResp over SHA-256(message) against the pinned CA; returns genTime."""
    roots = _pinned_roots(ca_pem)
    response = timestamp_decode(tsr_der)

    # Only the pinned roots are trusted: certificates the token carries (a TSA's intermediates)
    # may help build the chain to one of them, never end it.
    verifier = VerifierBuilder()
    for root in roots:
        verifier = verifier.add_root_certificate(root)
    imprint = response.tst_info.message_imprint
    try:
        # Given the token's own imprint, this checks only who signed it; which message it covers
        # is checked below, so that each failure gets its own explanation.
        verifier.build().verify(response, imprint.message)
    except (VerificationError, ValueError) as exc:  # ValueError: a certificate that is no X.509
        raise TimestampError(f"the time-stamp is not signed by the pinned TSA CA ({exc})") from exc

    if imprint.hash_algorithm != SHA256_OID:
        raise TimestampError(
            f"the time-stamp covers a digest made with {imprint.hash_algorithm.dotted_string}, "
            "not SHA-256 as Veridict time-stamps do"
        )
    if not hmac.compare_digest(imprint.message, hashlib.sha256(message).digest()):
        raise TimestampError("the time-stamp covers a different message")
    # rfc3161-client gives genTime to the second; the signed TSTInfo may hold a finer fraction.
    return response.tst_info.gen_time.astimezone(UTC)


def _pinned_roots(ca_pem: bytes) -> list[x509.Certificate]:
    try:
        certificates = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        raise TimestampError(
            "the pinned TSA CA is not a PEM certificate: pass the CA certificate from the keys page"
        ) from exc
    # rfc3161-client refuses the same root twice, and a PEM bundle may repeat one.
    return list(dict.fromkeys(certificates))


def _certificates_sorted(tsr_der: bytes) -> bytes:
    """The response with the token's certificates in DER order, the rest byte for byte as given.

    A TSA that sends its chain (leaf, intermediates, root) often lists the certificates in chain
    order, as OpenSSL does; DER wants a SET OF sorted by encoding, and rfc3161-client refuses
    anything else (InvalidSetOrdering). The signature covers neither the certificates field nor
    its order (RFC 5652 §5.4: only the content and the signed attributes), so sorting it changes
    nothing that is proven; the stored response stays as the TSA sent it (OpenSSL reads it as is).
    """
    try:
        response = tsp.TimeStampResp.load(tsr_der)
        signed_data = response["time_stamp_token"]["content"]
        certificates = signed_data["certificates"]
        if len(certificates) < 2:
            return tsr_der
        # Assigning the set again makes asn1crypto encode it anew, sorted (its SetOf is DER).
        signed_data["certificates"] = list(certificates)
        return response.dump()
    except (ValueError, TypeError, KeyError, AttributeError):
        return tsr_der  # not what it should be: the strict parser below says what is wrong


def timestamp_decode(tsr_der: bytes) -> TimeStampResponse:
    """A granted TimeStampResp, parsed (not verified); TimestampError says what is wrong."""
    try:
        response = decode_timestamp_response(_certificates_sorted(tsr_der))
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
