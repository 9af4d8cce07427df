"""The built-in RFC 3161 time-stamp authority: its keys and certificates, and its DER answers."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from asn1crypto import algos, cms, core, tsp
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from timestamping.keys import write_secret

# The policy every token of the built-in TSA names: "this operator's TSA saw this digest then".
# It sits under the 2.25 arc (ITU-T X.667: an OID made from a random UUID), which needs no
# registered enterprise number and cannot clash with anybody else's OID.
POLICY_OID = "2.25.23992986701388631534749680570431919514"

# Digest algorithms a request may use, with the digest length each implies.
ACCEPTED_DIGESTS = {"sha256": 32, "sha384": 48, "sha512": 64}

CERTIFICATE_VALIDITY = timedelta(days=3650)


@dataclass(frozen=True)
class _Signer:
    key: ec.EllipticCurvePrivateKey
    certificate: asn1_x509.Certificate
    certificate_sha256: bytes


# --- Creating the TSA ---------------------------------------------------------------------------


def tsa_create(
    *,
    key_file: Path,
    cert_file: Path,
    ca_cert_file: Path,
    ca_key_file: Path | None = None,
    common_name: str = "Veridict built-in TSA",
) -> None:
    """Creates a CA and a TSA certificate it issues; never overwrites an existing file."""
    targets = [key_file, cert_file, ca_cert_file] + ([ca_key_file] if ca_key_file else [])
    existing = [str(path) for path in targets if path.exists()]
    if existing:
        # Checked up front so that a refusal leaves no half-made TSA behind.
        raise FileExistsError(f"refusing to overwrite {', '.join(existing)}")

    # Back-dated a little so that a verifier whose clock lags ours still finds the chain valid.
    not_before = datetime.now(UTC) - timedelta(hours=1)
    not_after = not_before + CERTIFICATE_VALIDITY

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    tsa_key = ec.generate_private_key(ec.SECP256R1())
    tsa_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(tsa_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True, content_commitment=True), critical=True)
        # RFC 3161 §2.3: the TSA certificate holds this one purpose, marked critical; OpenSSL
        # and rfc3161-client both refuse tokens whose signer certificate lacks it.
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(tsa_key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )

    write_secret(key_file, _private_pem(tsa_key))
    _write_new(cert_file, tsa_cert.public_bytes(serialization.Encoding.PEM))
    _write_new(ca_cert_file, ca_cert.public_bytes(serialization.Encoding.PEM))
    # Once the CA key is discarded nobody, the operator included, can issue a second certificate
    # that verifiers pinning this CA would trust; rotating means a new CA, published next to the
    # old one.
    if ca_key_file is not None:
        write_secret(ca_key_file, _private_pem(ca_key))


def _key_usage(**granted: bool) -> x509.KeyUsage:
    usages = dict.fromkeys(
        [
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ],
        False,
    )
    usages.update(granted)
    return x509.KeyUsage(**usages)


def _private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write_new(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("xb") as handle:
        handle.write(content)


# --- Loading the TSA ----------------------------------------------------------------------------


def _stat_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except FileNotFoundError as exc:
        raise ImproperlyConfigured(
            f"the built-in TSA has no {path}: run `python manage.py create_tsa`"
        ) from exc


def _signer() -> _Signer:
    key_file, cert_file = Path(settings.TSA_KEY_FILE), Path(settings.TSA_CERT_FILE)
    # The mtimes are part of the cache key, so replaced files are picked up without a restart.
    return _signer_load(key_file, _stat_ns(key_file), cert_file, _stat_ns(cert_file))


@functools.lru_cache(maxsize=4)
def _signer_load(key_file: Path, key_mtime: int, cert_file: Path, cert_mtime: int) -> _Signer:
    try:
        key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        certificate = x509.load_pem_x509_certificate(cert_file.read_bytes())
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"the built-in TSA's {key_file} or {cert_file} is not a PEM key or certificate"
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ImproperlyConfigured(f"{key_file} is not an EC private key")
    if key.public_key() != certificate.public_key():
        raise ImproperlyConfigured(f"{key_file} is not the key of the certificate {cert_file}")
    der = certificate.public_bytes(serialization.Encoding.DER)
    return _Signer(
        key=key,
        certificate=asn1_x509.Certificate.load(der),
        certificate_sha256=hashlib.sha256(der).digest(),
    )


def tsa_ca_certificate_pem() -> str:
    """The CA certificate that verifiers pin for the built-in TSA (published on the keys page)."""
    path = Path(settings.TSA_CA_CERT_FILE)
    try:
        return path.read_text()
    except FileNotFoundError as exc:
        raise ImproperlyConfigured(
            f"the built-in TSA has no CA certificate at {path}: run `python manage.py create_tsa`"
        ) from exc


# --- Answering requests -------------------------------------------------------------------------


class TimeStampResp(tsp.TimeStampResp):
    """asn1crypto's TimeStampResp with the token optional, so that rejections can be read too."""

    # asn1crypto makes the token mandatory, but RFC 3161 §2.4.2 leaves it out of every rejection.
    _fields = [
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


class _Rejection(Exception):
    def __init__(self, fail_info: str, text: str) -> None:
        super().__init__(text)
        self.fail_info = fail_info
        self.text = text


def tsa_stamp(digest: bytes, *, now: datetime | None = None) -> bytes:
    """Time-stamps a SHA-256 digest: the whole DER TimeStampResp, with the TSA certificate."""
    if len(digest) != ACCEPTED_DIGESTS["sha256"]:
        raise ValueError(f"a SHA-256 digest has 32 bytes, not {len(digest)}")
    request = tsp.TimeStampReq(
        {
            "version": "v1",
            "message_imprint": {
                "hash_algorithm": {"algorithm": "sha256"},
                "hashed_message": digest,
            },
            "nonce": _random_positive(64),
            "cert_req": True,
        }
    )
    return tsa_respond(request.dump(), now=now)


def tsa_respond(request_der: bytes, *, now: datetime | None = None) -> bytes:
    """Answers a DER TimeStampReq with a DER TimeStampResp: granted, or rejected with a reason."""
    if now is not None and now.utcoffset() is None:
        raise ValueError("now must be an aware datetime")
    try:
        request = _request_check(request_der)
    except _Rejection as rejection:
        return TimeStampResp(
            {
                "status": {
                    "status": "rejection",
                    "status_string": [rejection.text],
                    "fail_info": {rejection.fail_info},
                }
            }
        ).dump()
    gen_time = (now or datetime.now(UTC)).astimezone(UTC)
    token = _token(request, _signer(), gen_time)
    return TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token}).dump()


def _request_check(request_der: bytes) -> tsp.TimeStampReq:
    try:
        request = tsp.TimeStampReq.load(request_der, strict=True)
        # asn1crypto parses lazily: reading every field now surfaces any malformed one here.
        request.native  # noqa: B018
    except Exception as exc:  # asn1crypto raises many types on hostile input; all mean the same
        raise _Rejection("bad_data_format", "the request is not a DER TimeStampReq") from exc
    if request["version"].native != "v1":
        raise _Rejection("bad_request", "only version 1 requests are supported")
    imprint = request["message_imprint"]
    algorithm = imprint["hash_algorithm"]["algorithm"].native
    if algorithm not in ACCEPTED_DIGESTS:
        raise _Rejection("bad_alg", f"{algorithm} is not accepted; use SHA-256, SHA-384 or SHA-512")
    if imprint["hash_algorithm"]["parameters"].native is not None:
        raise _Rejection("bad_alg", f"{algorithm} takes no parameters")
    if len(imprint["hashed_message"].native) != ACCEPTED_DIGESTS[algorithm]:
        raise _Rejection("bad_data_format", f"the imprint is not a {algorithm} digest")
    policy = request["req_policy"].native
    if policy is not None and policy != POLICY_OID:
        raise _Rejection("unaccepted_policy", f"this TSA only issues under policy {POLICY_OID}")
    if request["extensions"].native:
        raise _Rejection("unaccepted_extensions", "this TSA accepts no request extensions")
    return request


def _token(request: tsp.TimeStampReq, signer: _Signer, gen_time: datetime) -> cms.ContentInfo:
    certificate = signer.certificate
    tst_info = tsp.TSTInfo(
        {
            "version": "v1",
            "policy": POLICY_OID,
            "message_imprint": request["message_imprint"],
            "serial_number": _random_positive(128),
            "gen_time": gen_time,
            "accuracy": {"seconds": 1},
            "nonce": request["nonce"].native,
            "tsa": asn1_x509.GeneralName(name="directory_name", value=certificate.subject),
        }
    )
    tst_info_der = tst_info.dump()
    signed_attrs = cms.CMSAttributes(
        [
            {"type": "content_type", "values": ["tst_info"]},
            {"type": "message_digest", "values": [hashlib.sha256(tst_info_der).digest()]},
            # CMS (RFC 5652 §11.3) wants UTCTime for signing-time until 2050.
            {
                "type": "signing_time",
                "values": [
                    cms.Time(
                        name="utc_time" if gen_time.year < 2050 else "generalized_time",
                        value=gen_time,
                    )
                ],
            },
            {
                # RFC 5816: binds the signature to this one certificate, so a verifier cannot be
                # handed another certificate with the same key.
                "type": "signing_certificate_v2",
                "values": [
                    {
                        "certs": [
                            {
                                "cert_hash": signer.certificate_sha256,
                                "issuer_serial": {
                                    "issuer": [
                                        asn1_x509.GeneralName(
                                            name="directory_name", value=certificate.issuer
                                        )
                                    ],
                                    "serial_number": certificate.serial_number,
                                },
                            }
                        ]
                    }
                ],
            },
        ]
    )
    # The signature covers the attributes DER-encoded as a SET OF (tag 0x31), not with the [0]
    # tag they carry inside SignerInfo (RFC 5652 §5.4).
    signature = signer.key.sign(signed_attrs.dump(), ec.ECDSA(hashes.SHA256()))
    sha256 = algos.DigestAlgorithm({"algorithm": "sha256"})
    signed_data = cms.SignedData(
        {
            "version": "v3",
            "digest_algorithms": [sha256],
            "encap_content_info": {
                "content_type": "tst_info",
                "content": core.ParsableOctetString(tst_info_der),
            },
            # Only the TSA certificate, never the CA: verifiers pin the CA anyway.
            "certificates": (
                [cms.CertificateChoices(name="certificate", value=certificate)]
                if request["cert_req"].native
                else None
            ),
            "signer_infos": [
                {
                    "version": "v1",
                    "sid": cms.SignerIdentifier(
                        name="issuer_and_serial_number",
                        value={
                            "issuer": certificate.issuer,
                            "serial_number": certificate.serial_number,
                        },
                    ),
                    "digest_algorithm": sha256,
                    "signed_attrs": signed_attrs,
                    "signature_algorithm": {"algorithm": "sha256_ecdsa"},
                    "signature": signature,
                }
            ],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data})


def _random_positive(bits: int) -> int:
    # Never zero, so that the DER INTEGER is always a positive number of at most `bits` bits.
    return 1 + secrets.randbelow(2**bits - 1)
