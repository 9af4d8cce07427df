"""The evidence package of an AI system (docs/evidence.md), streamed as it is made."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from audit.models import AISystem, SystemAPIKey
from audit.services.evidence import (
    EXPORT_PERMISSION,
    EvidenceError,
    EvidenceOpenings,
    evidence_chunks,
    evidence_recipient,
)
from audit.throttling import SystemKeyRateThrottle
from timestamping.api import BAD_REQUEST, NOT_FOUND


class EvidenceQuerySerializer(serializers.Serializer):
    explanations = serializers.BooleanField(required=False, default=False)
    inputs = serializers.BooleanField(required=False, default=False)
    recipient = serializers.CharField(required=False, allow_blank=True, default="")

    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` and `to` are keywords, so they cannot be declared as class attributes.
        return {
            "from": serializers.DateField(
                required=False, allow_null=True, help_text="first day (UTC) of the range"
            ),
            "to": serializers.DateField(
                required=False, allow_null=True, help_text="last day (UTC) of the range"
            ),
            **super().get_fields(),
        }

    def validate_recipient(self, value: str) -> str:
        if value:
            try:
                evidence_recipient(value)
            except EvidenceError as exc:
                raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("from") and attrs.get("to") and attrs["from"] > attrs["to"]:
            raise serializers.ValidationError({"from": "is after to"})
        return attrs


class CanExportEvidence(BasePermission):
    """The system's own API key (checked against the slug by the view), or a staff user with
    the export_evidence permission (compliance officers, administrators)."""

    message = "an AI system's API key or the export_evidence permission is required"

    def has_permission(self, request: Request, view: Any) -> bool:
        if isinstance(request.auth, SystemAPIKey):
            return True
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


class EvidenceView(APIView):
    permission_classes = [CanExportEvidence]
    throttle_classes = [SystemKeyRateThrottle]  # an API key's requests count as its others do

    @extend_schema(
        summary="The evidence package of an AI system over a range of batches",
        description=(
            "gzip-compressed NDJSON (docs/evidence.md), or with `recipient` that file encrypted "
            "to the age key. The range covers the batches sealed from `from` 00:00 UTC to the "
            "end of `to` (UTC). For the system's own API key, or staff with export_evidence."
        ),
        parameters=[EvidenceQuerySerializer],
        responses={
            (200, "application/gzip"): OpenApiResponse(OpenApiTypes.BINARY),
            400: BAD_REQUEST,
            404: NOT_FOUND,
        },
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        system = self._system(request, slug)
        # An empty `from=` or `to=` (as the admin's form sends) means an open end.
        query = {name: value for name, value in request.query_params.items() if value != ""}
        incoming = EvidenceQuerySerializer(data=query)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        recipient = data["recipient"] or None
        chunks = evidence_chunks(
            system=system,
            date_from=data.get("from"),
            date_to=data.get("to"),
            openings=EvidenceOpenings(explanation=data["explanations"], inputs=data["inputs"]),
            recipient=recipient,
        )
        name = f"{system.slug}-evidence.ndjson.gz" + (".age" if recipient else "")
        response = StreamingHttpResponse(
            chunks,
            content_type="application/octet-stream" if recipient else "application/gzip",
        )
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        response["Cache-Control"] = "no-store"
        return response

    def _system(self, request: Request, slug: str) -> AISystem:
        if isinstance(request.auth, SystemAPIKey):
            # Another system's key learns nothing, not even whether the slug exists.
            if request.auth.system.slug != slug:
                raise NotFound(f"no AI system {slug} for this API key")
            return request.auth.system
        if not request.user.has_perm(EXPORT_PERMISSION):
            raise PermissionDenied("exporting evidence needs the export_evidence permission")
        system = AISystem.objects.filter(slug=slug).first()
        if system is None:
            raise NotFound(f"no AI system {slug}")
        return system
