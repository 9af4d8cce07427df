"""De-identified outcome counts for the bias audit, and which outcomes count as favourable."""

from __future__ import annotations

from django.db import models

from audit.models import AISystem, Decision, ModelVersion

NO_SCORE = -1
UNKNOWN = "unknown"
LABEL_MAX = 100


class AttributeSet(models.Model):
    """One distinct tuple of protected attribute values that a system reported."""

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="+")
    attributes = models.JSONField(help_text="{name: value}, names sorted")
    # SHA-256 of the canonical attributes: a unique key that JSON columns cannot be on SQLite.
    digest = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "digest"], name="attribute_set_unique")
        ]

    def __str__(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.attributes.items()) or "(none)"


class OutcomeCount(models.Model):
    """How many decisions share every audited dimension; no decision or subject id."""

    system = models.ForeignKey(AISystem, on_delete=models.CASCADE, related_name="+")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="+")
    day = models.DateField(help_text="The decision's occurred_at, UTC.")
    attribute_set = models.ForeignKey(AttributeSet, on_delete=models.CASCADE, related_name="+")
    predicted = models.CharField(max_length=LABEL_MAX)
    actual = models.CharField(max_length=LABEL_MAX, default=UNKNOWN)
    final = models.CharField(max_length=LABEL_MAX, help_text="The AI's label until reviewed.")
    reviewed = models.BooleanField(default=False)
    score_bucket = models.SmallIntegerField(default=NO_SCORE)
    count = models.BigIntegerField(default=0)

    class Meta:
        constraints = [
            # The ON CONFLICT target of every upsert (bias/services.py): keep it in step.
            models.UniqueConstraint(
                fields=[
                    "system",
                    "day",
                    "model_version",
                    "attribute_set",
                    "predicted",
                    "actual",
                    "final",
                    "reviewed",
                    "score_bucket",
                ],
                name="outcome_count_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.count} × {self.predicted} on {self.day} ({self.attribute_set_id})"


class FinalOutcome(models.Model):
    """The final label last applied to a decision's count, so that a repeated call moves nothing."""

    decision = models.OneToOneField(
        Decision, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    label = models.CharField(max_length=LABEL_MAX)

    def __str__(self) -> str:
        return f"final {self.label} of decision {self.decision_id}"


class OutcomeMapping(models.Model):
    """Which labels are favourable for one system: read when a report is built, never stored in
    the counts, so changing it applies to every past decision at once."""

    system = models.OneToOneField(AISystem, on_delete=models.CASCADE, related_name="bias_mapping")
    favourable_labels = models.JSONField(
        default=list, blank=True, help_text="Decision labels that select the person."
    )
    favourable_actual_labels = models.JSONField(
        default=list, blank=True, help_text="Outcome labels that are the positive ground truth."
    )

    def __str__(self) -> str:
        return f"favourable outcomes of {self.system}"


from bias.models_published import *  # noqa: E402,F403 -- the dashboard's model, in its own module
