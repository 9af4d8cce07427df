"""Reads of published bias audits: the list, the frozen report, its receipt and its check."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from django.db.models import QuerySet
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from audit.models import AISystem
from bias.models_published import PublishedAudit
from timestamping import tsa
from timestamping.models import LogKey
from timestamping.selectors import receipt_get


def published_audits(*, system: AISystem | None = None) -> QuerySet[PublishedAudit]:
    """Newest first; every published audit is public, whatever its system."""
    audits = PublishedAudit.objects.select_related("system", "entry")
    return audits.filter(system=system) if system is not None else audits


def published_audit_get(*, audit_id: int) -> PublishedAudit | None:
    return published_audits().filter(pk=audit_id).first()


def published_audit_report(audit: PublishedAudit) -> dict[str, Any]:
    """The report as published, parsed from the stored bytes (never rebuilt from the counts)."""
    return json.loads(bytes(audit.report_canonical))


def published_audit_receipt(audit: PublishedAudit) -> dict[str, Any]:
    """The entry's receipt. Served to anyone: publishing made the audit public, even of a
    private system (whose receipts the API keeps for its key and staff)."""
    return receipt_get(entry=audit.entry)


def published_audit_check(audit: PublishedAudit) -> dict[str, Any]:
    """What the published page shows: the receipt verified with the log's own published keys
    (a convenience; the page says how to check it with keys you pin yourself), and whether the
    stored report's SHA-256 is the one in the leaf."""
    receipt = published_audit_receipt(audit)
    keys = [VerifierKey.parse(key) for key in LogKey.objects.values_list("verifier_key", flat=True)]
    verification = receipt_verify(
        receipt, keys=keys, tsa_ca_pem=tsa.tsa_ca_certificate_pem().encode()
    ).as_dict()
    leaf = json.loads(base64.b64decode(receipt["entry"]["canonical_b64"]))
    report_sha256 = hashlib.sha256(bytes(audit.report_canonical)).hexdigest()
    return {
        "receipt": receipt,
        "verification": verification,
        "leaf": leaf,
        "report_sha256": report_sha256,
        "digest_matches": leaf["body"].get("report_sha256") == report_sha256,
    }
