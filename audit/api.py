"""The ingestion API of AI systems: decisions, outcomes, model versions."""

from __future__ import annotations

import datetime
from typing import Any

import django_filters
from django import forms
from django.urls import reverse
from django_filters.fields import IsoDateTimeField
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import APIException, NotFound, ValidationError
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors, vault
from audit.authentication import HasSystemAPIKey
from audit.models import Decision
from audit.serializers import (
    DecisionAnswerSerializer,
    DecisionSerializer,
    ModelVersionSerializer,
    OutcomeSerializer,
)
from audit.services.decisions import (
    DecisionConflict,
    UnknownDecision,
    decision_record,
    model_version_register,
    outcome_record,
)
from audit.services.subjects import decision_client_id
from audit.throttling import SystemKeyRateThrottle
from review.selectors import final_output, review_status
from review.services.intake import PolicyRejected
from timestamping.api import BAD_REQUEST, NOT_FOUND, ErrorSerializer

DECISION_EXAMPLE = {
    "client_decision_id": "loan-2026-000123",
    "model": {"name": "loan-scorer", "version": "4.2.0"},
    "occurred_at": "2026-11-26T10:15:00Z",
    "inputs": {"income": 42000, "amount": 15000, "term_months": 48},
    "output": {"label": "deny", "score": 0.31},
    "confidence": 0.82,
    "threshold": 0.5,
    "explanation": {
        "main_factors": ["debt-to-income ratio", "short credit history"],
        "ai_role": "recommendation reviewed by a loan officer",
    },
    "solely_automated": False,
    "owner": "loan-officer-17",
    "subject_ref": "applicant-88231",
    "protected_attributes": {"sex": "female", "age_band": "30-39"},
}


CONFLICT = OpenApiResponse(
    ErrorSerializer,
    description="The Idempotency-Key, client decision id or version was used for another request.",
)


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PolicyRejectedError(APIException):
    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "policy_rejected"


class SystemAPIView(APIView):
    """An endpoint for AI systems: their API key, throttled per key."""

    permission_classes = [HasSystemAPIKey]
    throttle_classes = [SystemKeyRateThrottle]


def decision_answer(decision: Decision, request: Request) -> dict[str, Any]:
    entry = decision.entry
    return {
        "id": str(entry.uuid),
        "leaf_hash": bytes(entry.leaf_hash).hex(),
        "received_at": selectors.received_text(entry),
        "set": entry.set_note,
        "receipt_url": request.build_absolute_uri(
            reverse("entry-receipt", kwargs={"entry_id": entry.uuid})
        ),
        "subject_url": request.build_absolute_uri(
            reverse("decision-subject", kwargs={"token": decision.subject_token})
        ),
        "review": _review_brief(decision),
    }


def _review_brief(decision: Decision) -> dict[str, Any] | None:
    """Whether the decision awaits a person (policy, low confidence, sample), else None."""
    review = review_status(decision=decision)
    return None if review is None else {"status": review["status"], "reason": review["reason"]}


class DecisionReadSerializer(serializers.Serializer):
    id = serializers.UUIDField(source="entry.uuid")
    client_decision_id = serializers.SerializerMethodField(
        help_text="The AI system's id for the decision; null once its subject was erased."
    )
    model = serializers.SerializerMethodField()
    occurred_at = serializers.DateTimeField()
    received_at = serializers.DateTimeField()
    output = serializers.JSONField()
    confidence = serializers.FloatField(allow_null=True)
    threshold = serializers.FloatField(allow_null=True)
    solely_automated = serializers.BooleanField()
    supersedes = serializers.UUIDField(source="supersedes.entry.uuid", allow_null=True)
    leaf_hash = serializers.SerializerMethodField()
    outcomes = serializers.SerializerMethodField()
    review = serializers.SerializerMethodField()
    final_output = serializers.SerializerMethodField(
        help_text="The outcome that holds: a final review's, else the AI's output when no "
        "review was asked for; null while a review is pending."
    )

    def get_model(self, decision: Decision) -> dict[str, Any]:
        version = decision.model_version
        return {"name": version.name, "version": version.version, "declared": version.declared}

    def get_client_decision_id(self, decision: Decision) -> str | None:
        return decision_client_id(decision)

    def get_leaf_hash(self, decision: Decision) -> str:
        return bytes(decision.entry.leaf_hash).hex()

    def get_review(self, decision: Decision) -> dict[str, Any] | None:
        review = review_status(decision=decision)
        if review is None:
            return None
        return {**review, "due_at": serializers.DateTimeField().to_representation(review["due_at"])}

    def get_final_output(self, decision: Decision) -> Any:
        return final_output(decision=decision)

    def get_outcomes(self, decision: Decision) -> list[dict[str, Any]]:
        return [
            {"id": str(o.entry.uuid), "actual": o.actual, "observed_at": o.observed_at}
            for o in decision.outcomes.all()
        ]


class EntryAnswerSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    leaf_hash = serializers.CharField()
    received_at = serializers.CharField()
    set = serializers.CharField()


class ModelVersionAnswerSerializer(serializers.Serializer):
    name = serializers.CharField()
    version = serializers.CharField()
    artefact_sha256 = serializers.CharField()
    entry = serializers.UUIDField()


class UTCIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 allows UTC offsets up to ±23:59, PostgreSQL only up to ±15:59: compare in UTC."""

    def to_python(self, value: Any) -> datetime.datetime | None:
        moment = super().to_python(value)
        if moment is None:
            return None
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError as exc:
            raise forms.ValidationError("the time is out of range in UTC", code="invalid") from exc


class UTCDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UTCIsoDateTimeField


class DecisionFilter(django_filters.FilterSet):
    client_id = django_filters.CharFilter(method="client_id_filter")
    model_name = django_filters.CharFilter(field_name="model_version__name")
    model_version = django_filters.CharFilter(field_name="model_version__version")
    occurred_after = UTCDateTimeFilter(field_name="occurred_at", lookup_expr="gte")
    occurred_before = UTCDateTimeFilter(field_name="occurred_at", lookup_expr="lt")

    class Meta:
        model = Decision
        fields: list[str] = []

    def client_id_filter(self, queryset: Any, name: str, value: str) -> Any:
        # Stored only as a keyed hash: the filter hashes what it is asked for.
        system = self.request.auth.system
        lookup = vault.client_id_lookup(system_id=system.pk, client_decision_id=value)
        return queryset.filter(client_id_lookup=lookup)


class NewestFirst(CursorPagination):
    ordering = "-id"


class DecisionListView(SystemAPIView, generics.ListAPIView):
    serializer_class = DecisionReadSerializer
    filterset_class = DecisionFilter
    pagination_class = NewestFirst

    queryset = Decision.objects.none()  # for the schema; requests use get_queryset

    def get_queryset(self):  # type: ignore[no-untyped-def]
        return selectors.decisions_of(system=self.request.auth.system).select_related("review_item")

    @extend_schema(
        summary="Record a decision",
        request=DecisionSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                {"type": "string", "minLength": 1, "maxLength": 255},
                OpenApiParameter.HEADER,
                required=False,
                description="A retry with the same key and body answers 200 with the first answer.",
            )
        ],
        examples=[OpenApiExample("A loan decision", value=DECISION_EXAMPLE, request_only=True)],
        responses={
            201: DecisionAnswerSerializer,
            200: DecisionAnswerSerializer,
            400: BAD_REQUEST,
            409: CONFLICT,
            422: OpenApiResponse(
                ErrorSerializer, description="A rule of the system's policy rejects the decision."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        incoming = DecisionSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key")
        if key is not None and not 0 < len(key) <= 255:
            raise ValidationError({"Idempotency-Key": ["must be 1 to 255 characters"]})
        try:
            decision, created = decision_record(
                system=request.auth.system, data=incoming.validated_data, idempotency_key=key
            )
        except DecisionConflict as exc:
            raise Conflict(str(exc)) from exc
        except UnknownDecision as exc:
            raise ValidationError({"supersedes": [str(exc)]}) from exc
        except PolicyRejected as exc:
            raise PolicyRejectedError({"policy": [str(exc)]}) from exc
        return Response(
            decision_answer(decision, request),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )

    @extend_schema(
        summary="The caller's decisions, newest first",
        responses={
            200: DecisionReadSerializer(many=True),
            400: BAD_REQUEST,
            404: OpenApiResponse(ErrorSerializer, description="The cursor is not one we gave out."),
        },
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class DecisionDetailView(SystemAPIView):
    @extend_schema(
        summary="One of the caller's decisions",
        responses={200: DecisionReadSerializer, 404: NOT_FOUND},
    )
    def get(self, request: Request, decision_id: str) -> Response:
        decision = _own_decision(request, decision_id)
        return Response(DecisionReadSerializer(decision).data)


def _own_decision(request: Request, decision_id: str) -> Decision:
    decision = selectors.decision_of(system=request.auth.system, decision_id=decision_id)
    if decision is None:
        raise NotFound(f"no decision {decision_id} of this AI system")
    return decision


class OutcomeView(SystemAPIView):
    @extend_schema(
        summary="Record the ground truth of a decision",
        request=OutcomeSerializer,
        responses={201: EntryAnswerSerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def post(self, request: Request, decision_id: str) -> Response:
        decision = _own_decision(request, decision_id)
        incoming = OutcomeSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        outcome = outcome_record(decision=decision, **incoming.validated_data)
        entry = outcome.entry
        return Response(
            {
                "id": str(entry.uuid),
                "leaf_hash": bytes(entry.leaf_hash).hex(),
                "received_at": selectors.received_text(entry),
                "set": entry.set_note,
            },
            status=status.HTTP_201_CREATED,
        )


class ModelVersionView(SystemAPIView):
    @extend_schema(
        summary="Register (declare) a model version with its artefact digest",
        request=ModelVersionSerializer,
        responses={
            201: ModelVersionAnswerSerializer,
            200: ModelVersionAnswerSerializer,
            400: BAD_REQUEST,
            409: CONFLICT,
        },
    )
    def post(self, request: Request) -> Response:
        incoming = ModelVersionSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        version, created = model_version_register(
            system=request.auth.system, **incoming.validated_data
        )
        if not created and version.artefact_sha256 != incoming.validated_data["artefact_sha256"]:
            raise Conflict("this model version was declared with another artefact digest")
        return Response(
            {
                "name": version.name,
                "version": version.version,
                "artefact_sha256": version.artefact_sha256,
                "entry": str(version.entry.uuid),
            },
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )
