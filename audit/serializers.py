"""Input validation of the ingestion API: small serializers that refuse unknown fields."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

HEX_SHA256 = r"^[0-9a-f]{64}$"


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not declare, so a misspelt field is an error, not lost data."""

    def to_internal_value(self, data: Any) -> Any:
        unknown = sorted(set(data) - set(self.fields)) if isinstance(data, dict) else []
        errors = {name: ["unknown field: this endpoint does not take it"] for name in unknown}
        try:
            value = super().to_internal_value(data)
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                exc.detail.update(errors)
            raise
        if errors:
            raise serializers.ValidationError(errors)
        return value


class ModelRefSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    version = serializers.CharField(max_length=100)


class OutputSerializer(StrictSerializer):
    label = serializers.CharField(max_length=200, required=False)
    score = serializers.FloatField(required=False)
    value = serializers.JSONField(required=False, help_text="A number or a string.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if not attrs:
            raise serializers.ValidationError("give at least one of label, score, value")
        value = attrs.get("value")
        if "value" in attrs and not isinstance(value, int | float | str) or isinstance(value, bool):
            raise serializers.ValidationError({"value": ["must be a number or a string"]})
        return attrs


class ExplanationSerializer(StrictSerializer):
    main_factors = serializers.ListField(
        child=serializers.CharField(max_length=500), max_length=100, required=False
    )
    ai_role = serializers.CharField(
        max_length=500, required=False, help_text="What the AI did in this decision."
    )
    text = serializers.CharField(max_length=20_000, required=False)


class DecisionSerializer(StrictSerializer):
    client_decision_id = serializers.CharField(max_length=200)
    model = ModelRefSerializer()
    occurred_at = serializers.DateTimeField()
    inputs = serializers.DictField(required=False, help_text="The inputs, stored encrypted.")
    inputs_sha256 = serializers.RegexField(
        HEX_SHA256, required=False, help_text="Instead of the inputs: their SHA-256, hex."
    )
    output = OutputSerializer()
    confidence = serializers.FloatField(min_value=0, max_value=1, required=False, allow_null=True)
    threshold = serializers.FloatField(required=False, allow_null=True)
    explanation = ExplanationSerializer(required=False)
    solely_automated = serializers.BooleanField(
        help_text="True when no human took part (GDPR Art. 22)."
    )
    owner = serializers.CharField(
        max_length=200, required=False, help_text="The accountable human, if known."
    )
    subject_ref = serializers.CharField(
        max_length=500, help_text="Your reference for the person; stored only as a keyed hash."
    )
    protected_attributes = serializers.DictField(
        child=serializers.CharField(max_length=100),
        required=False,
        help_text='For the bias audit, e.g. {"sex": "female", "age_band": "40-49"}.',
    )
    supersedes = serializers.UUIDField(
        required=False, help_text="The id of the decision this one corrects."
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("inputs" in attrs) == ("inputs_sha256" in attrs):
            raise serializers.ValidationError(
                {"inputs": ["give either inputs or inputs_sha256, not both or neither"]}
            )
        return attrs


class DecisionAnswerSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    leaf_hash = serializers.CharField()
    received_at = serializers.CharField()
    set = serializers.CharField()
    receipt_url = serializers.URLField()
    subject_url = serializers.URLField()
    review = serializers.JSONField(
        allow_null=True,
        help_text='{"status": "pending", "reason": "policy"|"low_confidence"|"sample"} when the '
        "decision awaits human review, else null.",
    )


class OutcomeSerializer(StrictSerializer):
    actual = OutputSerializer()
    observed_at = serializers.DateTimeField()


class ModelVersionSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    version = serializers.CharField(max_length=100)
    artefact_sha256 = serializers.RegexField(HEX_SHA256)
    training_data_description = serializers.CharField(max_length=20_000, required=False, default="")
    training_data_sha256 = serializers.RegexField(HEX_SHA256, required=False, default="")
