"""Published bias audits: a report's exact bytes, frozen and appended to the ledger."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from audit.models import AISystem
from timestamping.models import Entry

__all__ = ["PublishedAudit"]


class PublishedAudit(models.Model):
    """A bias report as published: its RFC 8785 bytes are what the ledger entry's digest covers,
    so they are stored as hashed and served as they are, never rebuilt from the counts."""

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="published_audits")
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="published_audit")
    parameters = models.JSONField(help_text="The report's parameters, as in the entry.")
    report_canonical = models.BinaryField(help_text="RFC 8785 bytes of the report.")
    report_sha256 = models.CharField(max_length=64)
    tree_size = models.PositiveBigIntegerField(
        help_text="Size of the log's latest checkpoint when the report was published."
    )
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["-published_at"]
        permissions = [("publish_audit", "Can publish a bias audit to the ledger")]

    def __str__(self) -> str:
        return f"bias audit {self.pk} of {self.system}"
