"""The log's read API: checkpoint, keys, batches, proofs and receipts."""

from __future__ import annotations

import base64
import json

from django.conf import settings
from django.http import HttpResponse
from django.utils.module_loading import import_string
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.exceptions import NotFound
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from timestamping import keys, selectors, tsa
from timestamping.anchor_backends import anchor_receipt_fields
from timestamping.models import LogKey
from veridict.ratelimit import AnonymousAddressThrottle

RECEIPT_MEDIA_TYPE = "application/vnd.veridict.receipt+json"
HEX_HASH = r"^[0-9a-f]{64}$"
TREE_SIZE = {"type": "integer", "minimum": 1}


class PlainTextRenderer(BaseRenderer):
    """Lets content negotiation accept text/plain for views that answer signed notes."""

    media_type = "text/plain"
    format = "txt"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):  # type: ignore[no-untyped-def]
        # Only error bodies reach a renderer here (successes are HttpResponses): keep them JSON.
        return json.dumps(data).encode()


class ReceiptRenderer(JSONRenderer):
    media_type = RECEIPT_MEDIA_TYPE


class ErrorSerializer(serializers.Serializer):
    error = inline_serializer(
        "ErrorBody",
        {
            "code": serializers.CharField(),
            "message": serializers.CharField(),
            "fields": serializers.DictField(),
        },
    )


NOT_FOUND = OpenApiResponse(ErrorSerializer, description="Not in the log (yet).")
BAD_REQUEST = OpenApiResponse(ErrorSerializer, description="A parameter is missing or malformed.")
READS_THROTTLED = OpenApiResponse(
    ErrorSerializer,
    description="Too many reads from this address without an API key: retry after Retry-After.",
)


def _not_found(exc: selectors.NotInLog) -> NotFound:
    return NotFound(str(exc))


class CheckpointView(APIView):
    renderer_classes = [JSONRenderer, PlainTextRenderer]

    @extend_schema(
        summary="The latest signed checkpoint (C2SP tlog-checkpoint)",
        responses={(200, "text/plain"): OpenApiTypes.STR, 404: NOT_FOUND},
    )
    def get(self, request: Request) -> HttpResponse:
        latest = selectors.batch_latest()
        if latest is None:
            raise NotFound("nothing has been sealed yet")
        response = HttpResponse(latest.checkpoint, content_type="text/plain; charset=utf-8")
        response["Cache-Control"] = "max-age=2"
        return response


class LogKeySerializer(serializers.ModelSerializer):
    current = serializers.SerializerMethodField()

    class Meta:
        model = LogKey
        fields = ["key_id", "verifier_key", "first_used_at", "current"]

    def get_current(self, key: LogKey) -> bool:
        return key.verifier_key == self.context["current"]


class KeysSerializer(serializers.Serializer):
    origin = serializers.CharField()
    log_keys = LogKeySerializer(many=True)
    tsa_ca_pem = serializers.CharField()


class KeysView(APIView):
    @extend_schema(
        summary="Verifier keys (current and past) and the built-in TSA's CA certificate",
        responses=KeysSerializer,
    )
    def get(self, request: Request) -> Response:
        current = keys.verifier_key()
        data = {
            "origin": current.name,
            "log_keys": LogKeySerializer(
                LogKey.objects.all(), many=True, context={"current": str(current)}
            ).data,
            "tsa_ca_pem": tsa.tsa_ca_certificate_pem(),
        }
        return Response(data)


class AnchorSerializer(serializers.Serializer):
    type = serializers.CharField()
    backend = serializers.CharField(help_text='"builtin" or the configured backend\'s name.')
    anchored_at = serializers.DateTimeField()
    evidence = serializers.DictField(
        help_text="The type's receipt fields: tsa and tsr_b64, or the chain fields (DESIGN.md)."
    )


class AnchorJobSerializer(serializers.Serializer):
    backend = serializers.CharField()
    status = serializers.ChoiceField(choices=["pending", "anchored", "final", "failed"])
    attempts = serializers.IntegerField()
    failures = serializers.IntegerField()
    last_error = serializers.CharField(allow_blank=True, help_text="Why the last try failed.")
    next_attempt_at = serializers.DateTimeField(
        allow_null=True, help_text="When the sweeper tries again (or a running try's lease ends)."
    )
    updated_at = serializers.DateTimeField()


class BatchSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    prev_tree_size = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    root = serializers.CharField()
    header = serializers.JSONField()
    header_b64 = serializers.CharField()
    header_hash = serializers.CharField()
    checkpoint = serializers.CharField()
    sealed_at = serializers.DateTimeField()
    anchors = AnchorSerializer(many=True)
    anchor_jobs = AnchorJobSerializer(many=True)


class BatchView(APIView):
    @extend_schema(
        summary="One sealed batch: its header, checkpoint, anchors and anchoring jobs",
        parameters=[OpenApiParameter("number", TREE_SIZE, OpenApiParameter.PATH)],
        responses={200: BatchSerializer, 404: NOT_FOUND},
    )
    def get(self, request: Request, number: int) -> Response:
        try:
            batch = selectors.batch_get(number=number)
        except selectors.NotInLog as exc:
            raise _not_found(exc) from exc
        header = bytes(batch.header)
        data = {
            "number": batch.number,
            "prev_tree_size": batch.prev_tree_size,
            "tree_size": batch.tree_size,
            "root": bytes(batch.root).hex(),
            "header": json.loads(header),
            "header_b64": base64.b64encode(header).decode(),
            "header_hash": bytes(batch.header_hash).hex(),
            "checkpoint": batch.checkpoint,
            "sealed_at": batch.sealed_at,
            "anchors": [
                {
                    "type": anchor.type,
                    "backend": anchor.backend,
                    "anchored_at": anchor.anchored_at,
                    "evidence": anchor_receipt_fields(anchor),
                }
                for anchor in batch.anchors.filter(reorg__isnull=True).order_by("type", "backend")
            ],
            "anchor_jobs": selectors.anchor_jobs_of_batch(batch=batch),
        }
        return Response(BatchSerializer(data).data)


class ReceiptReadThrottle(AnonymousAddressThrottle):
    scope = "receipt"


class ReceiptView(APIView):
    renderer_classes = [JSONRenderer, ReceiptRenderer, PlainTextRenderer]
    throttle_classes = [ReceiptReadThrottle]

    @extend_schema(
        summary="The entry's receipt, verifiable offline (veridict-verify, the portal)",
        description=(
            "Before the entry is sealed, `proof`, `checkpoint` and `batch` are null. "
            "`?format=tlog-proof` answers the same proof as C2SP tlog-proof text."
        ),
        parameters=[
            OpenApiParameter("format", str, enum=["json", "tlog-proof"], required=False),
        ],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/plain"): OpenApiTypes.STR,
            404: NOT_FOUND,
            429: READS_THROTTLED,
        },
    )
    def get(self, request: Request, entry_id: str) -> HttpResponse:
        try:
            entry = selectors.entry_get(entry_id=entry_id)
            # Not 403: a private system's entries must not even be known to exist.
            if not import_string(settings.RECEIPT_ACCESS)(entry, request):
                raise selectors.NotInLog(f"there is no entry {entry_id}")
            if request.query_params.get("format") == "tlog-proof":
                proof = selectors.receipt_tlog_proof(entry=entry)
                return HttpResponse(proof, content_type="text/plain; charset=utf-8")
            receipt = selectors.receipt_get(entry=entry, request=request)
        except selectors.NotInLog as exc:
            raise _not_found(exc) from exc
        content_type = (
            RECEIPT_MEDIA_TYPE
            if RECEIPT_MEDIA_TYPE in request.headers.get("Accept", "")
            else "application/json"
        )
        return HttpResponse(json.dumps(receipt, indent=1), content_type=content_type)


class InclusionQuery(serializers.Serializer):
    leaf_hash = serializers.RegexField(HEX_HASH, help_text="Leaf hash, 64 lower-case hex digits.")
    tree_size = serializers.IntegerField(min_value=1)


class InclusionSerializer(serializers.Serializer):
    leaf_index = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    hashes = serializers.ListField(child=serializers.CharField())


class InclusionProofView(APIView):
    @extend_schema(
        summary="RFC 9162 inclusion proof of a leaf in a tree of the given size",
        parameters=[InclusionQuery],
        responses={200: InclusionSerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        query = InclusionQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            proof = selectors.proof_inclusion(
                leaf_hash=bytes.fromhex(query.validated_data["leaf_hash"]),
                tree_size=query.validated_data["tree_size"],
            )
        except selectors.NotInLog as exc:
            raise _not_found(exc) from exc
        return Response(InclusionSerializer(proof).data)


class ConsistencyQuery(serializers.Serializer):
    # "from" is a Python keyword, so the field is declared under another name and renamed below.
    from_size = serializers.IntegerField(min_value=1)
    to = serializers.IntegerField(min_value=1)

    def to_internal_value(self, data):  # type: ignore[no-untyped-def]
        data = {"from_size": data.get("from"), "to": data.get("to")}
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError as exc:
            detail = exc.detail
            if isinstance(detail, dict) and "from_size" in detail:
                detail["from"] = detail.pop("from_size")
            raise serializers.ValidationError(detail) from exc


class ConsistencySerializer(serializers.Serializer):
    hashes = serializers.ListField(child=serializers.CharField())


class ConsistencyProofView(APIView):
    @extend_schema(
        summary="RFC 9162 consistency proof between two tree sizes",
        parameters=[
            OpenApiParameter("from", TREE_SIZE, required=True, description="The older tree size."),
            OpenApiParameter("to", TREE_SIZE, required=True, description="The newer tree size."),
        ],
        responses={200: ConsistencySerializer, 400: BAD_REQUEST, 404: NOT_FOUND},
    )
    def get(self, request: Request) -> Response:
        query = ConsistencyQuery(data=request.query_params)
        query.is_valid(raise_exception=True)
        try:
            hashes = selectors.proof_consistency(
                old_size=query.validated_data["from_size"], new_size=query.validated_data["to"]
            )
        except selectors.NotInLog as exc:
            raise _not_found(exc) from exc
        return Response({"hashes": [step.hex() for step in hashes]})
