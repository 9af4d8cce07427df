"""The admin's own audit trail: logins, logouts, refused logins and what staff did in the admin.

An ordinary table, not the ledger: it records who used the admin, which is about staff rather than
about the decisions, and it must hold usernames and addresses that have no place in a leaf.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from audit.models import Decision


class AdminEvent(models.Model):
    class Kind(models.TextChoices):
        LOGIN = "login", "logged in"
        LOGIN_FAILED = "login_failed", "login refused"
        LOCKED_OUT = "locked_out", "locked out"
        LOGOUT = "logout", "logged out"
        ADDITION = "addition", "added"
        CHANGE = "change", "changed"
        DELETION = "deletion", "deleted"
        REVIEW = "review", "review action"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="admin_events",
    )
    # As typed for a refused login; kept when the user is deleted.
    username = models.CharField(max_length=150, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    path = models.CharField(max_length=500, blank=True)
    content_type = models.ForeignKey(
        ContentType, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField("object", max_length=200, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # The django.contrib.admin LogEntry this row copies: unique, so a copy is made only once.
    log_entry_id = models.PositiveBigIntegerField(null=True, blank=True, unique=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["kind", "-created_at"])]

    def __str__(self) -> str:
        who = self.username or "someone"
        what = f" {self.object_repr}" if self.object_repr else ""
        return f"{who} {self.get_kind_display()}{what}"


class UnattributedDecision(Decision):
    """Decisions that no accountable person owns yet: their own admin list (review/admin.py),
    with the action that assigns an owner."""

    class Meta:
        proxy = True
        verbose_name = "unattributed decision"
