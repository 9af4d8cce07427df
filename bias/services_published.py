"""Publishing a bias audit: the report's canonical bytes, frozen and appended to the ledger."""

from __future__ import annotations

import datetime
import hashlib
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import transaction

from audit import vault
from audit.models import AISystem, ModelVersion
from bias.models_published import PublishedAudit
from bias.selectors import bias_report_build
from review.services.common import actor_pseudonym
from timestamping import canonical
from timestamping.selectors import batch_latest
from timestamping.services import entry_append

PUBLISH_PERMISSION = "bias.publish_audit"
ENTRY_KIND = "bias_audit"


def audit_parameters(
    *,
    attributes: list[str],
    reference: str | None,
    model_version: ModelVersion | None,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
    outcome: str,
) -> dict[str, Any]:
    """The report's parameters as the entry records them: enough to rebuild the same query."""
    return {
        "attributes": list(attributes),
        "reference": reference,
        "model_version": (
            {"name": model_version.name, "version": model_version.version}
            if model_version is not None
            else None
        ),
        "date_from": date_from.isoformat() if date_from else None,
        "date_to": date_to.isoformat() if date_to else None,
        "outcome": outcome,
        "public": True,
    }


def bias_audit_publish(
    *,
    system: AISystem,
    by: Any,
    attributes: list[str],
    reference: str | None = None,
    model_version: ModelVersion | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    outcome: str = "ai",
) -> PublishedAudit:
    """Builds the report as the public sees it (small groups suppressed: a published audit is
    for everyone), stores its RFC 8785 bytes and appends an entry holding their SHA-256, the
    parameters and the log's latest checkpoint, in one durable transaction.

    Raises PermissionDenied without bias.publish_audit, and bias.selectors.ReportError for a
    parameter the report refuses.
    """
    if not (by.is_active and by.has_perm(PUBLISH_PERMISSION)):
        raise PermissionDenied("publishing a bias audit needs the bias.publish_audit permission")
    parameters = audit_parameters(
        attributes=attributes,
        reference=reference,
        model_version=model_version,
        date_from=date_from,
        date_to=date_to,
        outcome=outcome,
    )
    with transaction.atomic(durable=True):
        # Inside the transaction: the counts read and the checkpoint named are of one moment.
        report = bias_report_build(
            system=system,
            attributes=attributes,
            reference=reference,
            model_version=model_version,
            date_from=date_from,
            date_to=date_to,
            outcome=outcome,
            public=True,
        )
        report_bytes = canonical.dumps(report)
        digest = hashlib.sha256(report_bytes).hexdigest()
        latest = batch_latest()
        tree_size = latest.tree_size if latest is not None else 0
        entry, _ = entry_append(
            kind=ENTRY_KIND,
            stream=vault.system_stream(system_id=system.pk),
            envelope={
                "type": ENTRY_KIND,
                "system": system.slug,
                "report_sha256": digest,
                "parameters": parameters,
                "tree_size": tree_size,
                "tree_root": bytes(latest.root).hex() if latest is not None else None,
                "published_by": actor_pseudonym(by),
            },
        )
        return PublishedAudit.objects.create(
            system=system,
            entry=entry,
            parameters=parameters,
            report_canonical=report_bytes,
            report_sha256=digest,
            tree_size=tree_size,
            published_by=by,
            published_at=entry.received_at,
        )
