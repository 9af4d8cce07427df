"""The AI-decision domain: systems, their keys and model versions, subjects, decisions,
outcomes and documents. Every record that matters is also an entry of the log; personal data is
stored here only encrypted under its subject's key (audit/vault.py)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MinValueValidator
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

from timestamping.models import Entry

MIN_RETENTION_DAYS = 183  # EU AI Act Art. 19/26: logs are kept at least six months


def subject_token() -> str:
    return secrets.token_urlsafe(32)


class AISystem(models.Model):
    class RiskLevel(models.TextChoices):
        MINIMAL = "minimal"
        LIMITED = "limited"
        HIGH = "high"

    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    description = models.TextField(blank=True)
    risk_level = models.CharField(max_length=16, choices=RiskLevel.choices, default=RiskLevel.HIGH)
    owners = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="ai_systems")
    contest_contact = models.CharField(
        max_length=255, blank=True, help_text="Where the people decided about can contest."
    )
    is_public = models.BooleanField(
        default=False, help_text="Receipts and documents are public; otherwise only for its key."
    )
    retention_days = models.PositiveIntegerField(
        default=MIN_RETENTION_DAYS, validators=[MinValueValidator(MIN_RETENTION_DAYS)]
    )
    store_documents = models.BooleanField(
        default=False, help_text="Keep uploaded files, not only their SHA-256."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "AI system"
        permissions = [("export_evidence", "Can export a system's evidence package")]

    def __str__(self) -> str:
        return self.name


class SystemAPIKey(AbstractAPIKey):
    """Stored hashed by djangorestframework-api-key; writes and reads as its one system only."""

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="api_keys")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "AI system API key"


class ModelVersion(models.Model):
    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="model_versions")
    name = models.CharField(max_length=200)
    version = models.CharField(max_length=100)
    # Null while undeclared: first seen in a decision, never registered with its artefact.
    artefact_sha256 = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    training_data_description = models.TextField(blank=True)
    training_data_sha256 = models.CharField(max_length=64, blank=True)
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="+")
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["system", "name", "version"], name="model_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    @property
    def declared(self) -> bool:
        return self.artefact_sha256 is not None


class Subject(models.Model):
    """A person decided about, known only by a keyed hash of the system's reference for them."""

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="subjects")
    lookup = models.BinaryField(max_length=32)
    # The subject's data key, encrypted under the master key; emptied on erasure.
    wrapped_key = models.BinaryField(null=True)
    erased_at = models.DateTimeField(null=True, blank=True)
    erasure_entry = models.OneToOneField(
        Entry, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "lookup"], name="subject_unique_lookup")
        ]

    def __str__(self) -> str:
        return f"subject {self.pk} of {self.system}"


class Decision(models.Model):
    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="decisions")
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="decision")
    # Keyed hashes (audit/vault.py) of the client decision id and the Idempotency-Key, which
    # often hold the applicant's number: unique per system, so retries find the first decision.
    # The client id itself is kept only in personal_data. At erasure both are replaced by random
    # bytes: nothing, not even the master key, links the row to those values afterwards.
    client_id_lookup = models.BinaryField(max_length=32)
    # NULL without a key: the unique constraint must not treat those requests as duplicates.
    idempotency_lookup = models.BinaryField(max_length=32, null=True, blank=True)
    # SHA-256 of the canonical request: a retry that matches gets the first answer, else 409.
    request_digest = models.BinaryField(max_length=32)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT)
    subject = models.ForeignKey(Subject, on_delete=models.PROTECT, related_name="decisions")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    occurred_at = models.DateTimeField()
    output = models.JSONField(help_text="label, score and/or value, as recorded in the leaf")
    confidence = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    solely_automated = models.BooleanField()
    # Inputs, subject reference, protected attributes, explanation, owner and the commitment
    # salts, AES-GCM under the subject's key: unreadable once the subject is erased.
    personal_data = models.BinaryField()
    subject_token = models.CharField(max_length=64, unique=True, default=subject_token)
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["system", "client_id_lookup"], name="decision_unique_client_id"
            ),
            models.UniqueConstraint(
                fields=["system", "idempotency_lookup"], name="decision_unique_idempotency_key"
            ),
        ]
        indexes = [models.Index(fields=["system", "-received_at"])]
        permissions = [("erase_subject", "Can erase a subject's personal data")]

    def __str__(self) -> str:
        # Not the client id: that is personal data, readable only through its subject's key.
        return f"decision {self.pk} of {self.system}"


class Outcome(models.Model):
    """The ground truth of a decision, when it becomes known."""

    decision = models.ForeignKey(Decision, on_delete=models.PROTECT, related_name="outcomes")
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="outcome")
    actual = models.JSONField(help_text="label and/or value")
    observed_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"outcome of {self.decision}"


class Document(models.Model):
    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="documents")
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="document")
    sha256 = models.CharField(max_length=64, db_index=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    media_type = models.CharField(max_length=255, blank=True)
    # Private documents are committed in the leaf as SHA-256(salt || digest); only the
    # receipt, for the system's key, carries the salt.
    private = models.BooleanField(default=False)
    salt = models.BinaryField(max_length=32, null=True, blank=True)
    file = models.FileField(upload_to="documents/%Y/%m/", blank=True)
    decisions = models.ManyToManyField(Decision, blank=True, related_name="documents")
    registered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "sha256"], name="document_unique_per_system")
        ]

    def __str__(self) -> str:
        return f"document {self.sha256[:12]}… of {self.system}"


class Erasure(models.Model):
    """One erasure, itself an entry: a subject's data key destroyed, or a stored file deleted."""

    class Reason(models.TextChoices):
        REQUEST = "request", "on request (GDPR Art. 17)"
        RETENTION = "retention", "past the retention period"

    system = models.ForeignKey(AISystem, on_delete=models.PROTECT, related_name="erasures")
    entry = models.OneToOneField(Entry, on_delete=models.PROTECT, related_name="erasure")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    subject = models.ForeignKey(
        Subject, null=True, blank=True, on_delete=models.PROTECT, related_name="erasures"
    )
    document = models.ForeignKey(
        Document, null=True, blank=True, on_delete=models.PROTECT, related_name="erasures"
    )
    decisions = models.PositiveIntegerField(
        default=0, help_text="How many decisions the entry commits to."
    )
    # The opening of the leaf's commitment to the decisions it covers: the sorted entry ids and
    # the salt, SHA-256(decisions_salt || RFC 8785 of decision_ids) (docs/receipts.md). The log
    # does not list them, which would tell the world that they were about one person.
    decision_ids = models.JSONField(default=list, blank=True)
    decisions_salt = models.BinaryField(max_length=32, null=True, blank=True)
    # The staff's free-text note may name people: kept here and only committed in the leaf,
    # as SHA-256(note_salt || RFC 8785 of the note).
    note = models.TextField(blank=True)
    note_salt = models.BinaryField(max_length=32, null=True, blank=True)
    erased_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    erased_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(subject__isnull=True) ^ models.Q(document__isnull=True),
                name="erasure_of_subject_or_document",
            )
        ]

    def __str__(self) -> str:
        what = f"subject {self.subject_id}" if self.subject_id else f"document {self.document_id}"
        return f"erasure of {what} ({self.reason})"
