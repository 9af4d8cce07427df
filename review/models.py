"""Human oversight of decisions: per-system review settings, policy sets, the review queue, the
ledgered review actions, accountable owners and webhook deliveries."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from audit.models import AISystem, Decision
from timestamping.models import Entry


class ReviewSettings(models.Model):
    """How one AI system's decisions are overseen; a system without a row has no reviewers."""

    system = models.OneToOneField(
        AISystem, on_delete=models.CASCADE, related_name="review_settings"
    )
    reviewers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="reviewed_systems"
    )
    default_owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Accountable for decisions whose record names no owner.",
    )
    sampling_rate = models.FloatField(
        default=0.0,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of decisions sent to review at random (0 to 1).",
    )
    low_confidence_below = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Decisions with a confidence below this go to review.",
    )
    four_eyes = models.BooleanField(
        default=False, help_text="An override needs a second reviewer's approval."
    )
    review_deadline_hours = models.PositiveIntegerField(default=72)
    webhook_url = models.URLField(
        blank=True, help_text="Receives each final review as signed JSON (HMAC-SHA256)."
    )
    # The policy set decisions are evaluated against now: one query at ingestion finds it.
    current_policy = models.ForeignKey(
        "PolicySet", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        verbose_name = "review settings"
        verbose_name_plural = "review settings"
        permissions = [
            ("view_oversight", "Can view oversight analytics"),
            ("review_all_systems", "Can review the decisions of every AI system"),
        ]

    def __str__(self) -> str:
        return f"review settings of {self.system}"


class PolicySet(models.Model):
    """One published version of a system's guardrail rules; each version is a ledger entry."""

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="policy_sets")
    version = models.PositiveIntegerField()
    rules = models.JSONField(help_text="The rules as published (review/policy.py).")
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="policy_set")
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    published_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "version"], name="policy_set_unique_version")
        ]
        permissions = [("publish_policy", "Can publish a system's policy set")]

    def __str__(self) -> str:
        return f"policy v{self.version} of {self.system}"


class ReviewItem(models.Model):
    """A decision in the review queue: at most one per decision, reopened by a later contest."""

    class Reason(models.TextChoices):
        POLICY = "policy"
        LOW_CONFIDENCE = "low_confidence", "low confidence"
        SAMPLE = "sample", "random sample"
        CONTEST = "contest"
        MANUAL = "manual"

    class Status(models.TextChoices):
        OPEN = "open"
        CLAIMED = "claimed"
        AWAITING_APPROVAL = "awaiting_approval", "awaiting approval"
        ESCALATED = "escalated"
        CLOSED = "closed"

    class Result(models.TextChoices):
        CONFIRMED = "confirmed"
        OVERRIDDEN = "overridden"

    class ClosedBy(models.TextChoices):
        REVIEW = "review", "a final review"
        ERASURE = "erasure", "erasure of the subject's personal data"

    decision = models.OneToOneField(Decision, on_delete=models.PROTECT, related_name="review_item")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    # Which rule sent it, for reason "policy" (e.g. "rule 2 (large amount)").
    reason_detail = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    due_at = models.DateTimeField()
    # Of the last final review: kept when a contest reopens the item, until the next one.
    result = models.CharField(max_length=16, choices=Result.choices, null=True, blank=True)  # noqa: DJ001
    final_output = models.JSONField(null=True, blank=True)
    # An override waiting for a second reviewer (four-eyes), and who proposed it.
    proposed_output = models.JSONField(null=True, blank=True)
    proposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Whoever escalated it last may not be the one to take it back.
    escalated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    time_spent_seconds = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    # Why it is closed: a final review (a ledger entry of its own), or the erasure of its
    # subject, whose entry commits to the decision; nothing is left to review then.
    closed_by = models.CharField(max_length=16, choices=ClosedBy.choices, blank=True)
    erasure = models.ForeignKey(
        "audit.Erasure",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="review_items_closed",
    )

    class Meta:
        indexes = [models.Index(fields=["status", "due_at"], name="reviewitem_queue")]
        permissions = [
            ("review_decision", "Can claim, confirm, override and escalate reviews"),
            ("approve_override", "Can approve or reject another reviewer's override"),
        ]

    def __str__(self) -> str:
        return f"review of {self.decision} ({self.status})"

    @property
    def is_overdue(self) -> bool:
        return self.status != self.Status.CLOSED and self.due_at < timezone.now()


class ReviewAction(models.Model):
    """One ledger entry of a decision's oversight: attribution, review step or contest.

    The leaf names the decision's entry, the actor by pseudonym and the free text by a salted
    commitment; the text and its salt are kept here, encrypted under the subject's key.
    """

    class Kind(models.TextChoices):
        ATTRIBUTION = "attribution"
        CONFIRM = "confirm"
        OVERRIDE = "override"
        APPROVE = "approve"
        REJECT_OVERRIDE = "reject_override", "override rejected"
        ESCALATE = "escalate"
        CONTEST = "contest"

    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="review_action")
    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="review_actions")
    item = models.ForeignKey(
        ReviewItem, null=True, blank=True, on_delete=models.PROTECT, related_name="actions"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_pseudonym = models.CharField(max_length=64)
    # The new outcome of an override (not personal: outputs are in the leaves already).
    output = models.JSONField(null=True, blank=True)
    # {"text", "salt"} sealed under the subject's key; empty for an action without text.
    sealed_text = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.kind} of {self.decision}"


class DecisionOwner(models.Model):
    """An attribution of a decision to an accountable person; the latest one holds."""

    class Source(models.TextChoices):
        RECORD = "record", "named in the record"
        SYSTEM_DEFAULT = "system_default", "the system's default owner"
        REVIEWER = "reviewer", "assigned by a reviewer"

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="owners")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The record's `owner` as given, when it names no known user.
    name = models.CharField(max_length=200, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices)
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The decision's own entry (its leaf commits to the owner or names the default owner), or
    # the attribution entry of a reviewer's assignment.
    entry = models.ForeignKey(Entry, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at", "pk"]
        permissions = [("assign_owner", "Can attribute decisions to an accountable owner")]

    def __str__(self) -> str:
        return f"owner of {self.decision}: {self.user or self.name}"


class WebhookDelivery(models.Model):
    """One final review reported to its system's webhook: one row per final action, so a task
    that runs twice finds it delivered."""

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        FAILED = "failed"  # retried at next_attempt_at
        ABANDONED = "abandoned"  # past VERIDICT_WEBHOOK_MAX_ATTEMPTS

    uuid = models.UUIDField(unique=True, default=uuid.uuid4, editable=False)
    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="+")
    action = models.OneToOneField(
        ReviewAction, on_delete=models.PROTECT, related_name="webhook_delivery"
    )
    url = models.URLField()
    body = models.BinaryField(help_text="The JSON body, fixed when the review became final.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # While a try runs, the end of its lease: a second runner leaves the row alone until then.
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="webhook_open",
                condition=models.Q(status__in=["pending", "failed"]),
            )
        ]

    def __str__(self) -> str:
        return f"webhook {self.uuid} ({self.status})"
