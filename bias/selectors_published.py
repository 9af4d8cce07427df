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
from bias.selectors import VIEW_PERMISSION
from timestamping import tsa
from timestamping.models import LogKey
from timestamping.selectors import receipt_get


def published_audits(*, user: Any, system: AISystem | None = None) -> QuerySet[PublishedAudit]:
    """Newest first, those this reader may see: of public systems for everyone, of every
    system for staff with the bias.view_outcomecount permission (a private system's name is
    not told to others, as on the dashboard)."""
    audits = PublishedAudit.objects.select_related("system", "entry")
    if not (user is not None and user.is_authenticated and user.has_perm(VIEW_PERMISSION)):
        audits = audits.filter(system__is_public=True)
    return audits.filter(system=system) if system is not None else audits


def published_audit_get(*, user: Any, audit_id: int) -> PublishedAudit | None:
    return published_audits(user=user).filter(pk=audit_id).first()


def published_audit_report(audit: PublishedAudit) -> dict[str, Any]:
    """The report as published, parsed from the stored bytes (never rebuilt from the counts)."""
    return json.loads(bytes(audit.report_canonical))


def published_audit_receipt(audit: PublishedAudit) -> dict[str, Any]:
    """The entry's receipt, served to whoever may see the audit (published_audits)."""
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
