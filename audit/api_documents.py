"""The documents API: registering a document (uploaded and hashed as it streams, or its digest
alone) and the public lookup of a digest."""

from __future__ import annotations

import re
import uuid
from typing import Any

from django.http import QueryDict
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.fields import empty
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.utils import html
from rest_framework.views import APIView
from veridict_verify.formats import format_time

from audit import document_selectors
from audit.api import SystemAPIView
from audit.models import Document, SystemAPIKey
from audit.serializers import StrictSerializer
from audit.services.documents import UnknownDecisions, document_register
from audit.uploads import HashedUpload, HashingMultiPartParser
from timestamping.api import BAD_REQUEST, NOT_FOUND, ErrorSerializer
from veridict.parsers import MAX_SAFE_INTEGER, IJSONParser
from veridict.ratelimit import FixedWindowThrottle

HEX_SHA256_ANY_CASE = r"^[0-9a-fA-F]{64}$"
# RFC 6838 type/subtype names, without parameters.
MEDIA_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
MAX_LINKED_DECISIONS = 1000
# Used until REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] names a rate for "document_lookup".
DEFAULT_LOOKUP_RATE = "60/min"
TOO_MANY = OpenApiResponse(
    ErrorSerializer, description="Too many lookups: retry after Retry-After seconds."
)


@extend_schema_field({"type": "array", "items": {"type": "string", "format": "uuid"}})
class DecisionIdsField(serializers.Field):
    """Entry ids of decisions: a JSON list of strings, or form values, repeated and/or
    comma-separated."""

    default_error_messages = {
        "invalid": "give a list of decision ids (strings)",
        "not_an_id": "{value!r} is not a decision id (the entry UUID a decision was answered)",
        "too_many": f"at most {MAX_LINKED_DECISIONS} decisions",
    }

    def get_value(self, dictionary: Any) -> Any:
        if html.is_html_input(dictionary):
            values = dictionary.getlist(self.field_name)
            return values if values else empty
        return dictionary.get(self.field_name, empty)

    def to_internal_value(self, data: Any) -> list[str]:
        items = [data] if isinstance(data, str) else data
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            self.fail("invalid")
        ids: list[str] = []
        for item in items:
            for part in item.split(","):
                part = part.strip()
                if not part:
                    continue
                try:
                    ids.append(str(uuid.UUID(part)))
                except ValueError:
                    self.fail("not_an_id", value=part[:80])
        ids = list(dict.fromkeys(ids))
        if len(ids) > MAX_LINKED_DECISIONS:
            self.fail("too_many")
        return ids

    def to_representation(self, value: Any) -> Any:
        return value


class DocumentSerializer(StrictSerializer):
    """Either `file` (multipart/form-data) or `sha256` (JSON or form): the document itself,
    hashed as it streams, or its digest alone."""

    file = serializers.FileField(
        required=False,
        help_text="The document (multipart/form-data): hashed with SHA-256 as it streams; "
        "kept only if the AI system stores documents.",
    )
    sha256 = serializers.RegexField(
        HEX_SHA256_ANY_CASE,
        required=False,
        help_text="The document's SHA-256, hex: registers the digest alone; "
        "with a file, the digest the upload must have.",
        error_messages={"invalid": "must be a SHA-256 digest: 64 hex digits"},
    )
    size = serializers.IntegerField(
        min_value=0,
        max_value=MAX_SAFE_INTEGER,
        required=False,
        allow_null=True,
        help_text="Size in bytes; counted by the server for an upload.",
    )
    media_type = serializers.CharField(
        max_length=255,
        required=False,
        allow_null=True,
        help_text="e.g. application/pdf; for an upload, its part's Content-Type by default.",
    )
    private = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Commit the digest with a salt that only the receipt, for your key, carries.",
    )
    decisions = DecisionIdsField(
        required=False,
        default=list,
        help_text="Ids of your decisions this document informed: a list, or repeated or "
        "comma-separated form values.",
    )

    def validate_media_type(self, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not MEDIA_TYPE.match(value):
            raise serializers.ValidationError("must be a media type such as application/pdf")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        upload = attrs.get("file")
        if upload is None:
            if "sha256" not in attrs:
                problem = "give the document as `file` (multipart/form-data) or its `sha256`"
                raise serializers.ValidationError({"file": [problem], "sha256": [problem]})
            attrs["sha256"] = attrs["sha256"].lower()
            return attrs
        if not isinstance(upload, HashedUpload):  # only HashingMultiPartParser makes files
            raise serializers.ValidationError({"file": ["send the file as multipart/form-data"]})
        expected = attrs.get("sha256")
        if expected is not None and expected.lower() != upload.sha256:
            raise serializers.ValidationError(
                {"sha256": [f"the uploaded file's SHA-256 is {upload.sha256}, not this one"]}
            )
        if attrs.get("size") is not None and attrs["size"] != upload.size:
            raise serializers.ValidationError(
                {"size": [f"the uploaded file has {upload.size} bytes, not {attrs['size']}"]}
            )
        attrs["sha256"] = upload.sha256
        attrs["size"] = upload.size
        if attrs.get("media_type") is None and upload.content_type:
            part_type = upload.content_type.strip().lower()
            attrs["media_type"] = part_type if MEDIA_TYPE.match(part_type) else None
        return attrs


class DocumentAnswerSerializer(serializers.Serializer):
    id = serializers.UUIDField(help_text="The entry's id.")
    sha256 = serializers.CharField()
    leaf_hash = serializers.CharField()
    received_at = serializers.CharField()
    set = serializers.CharField()
    receipt_url = serializers.URLField()
    stored = serializers.BooleanField(help_text="Whether Veridict keeps the file.")
    private = serializers.BooleanField()
    decisions = serializers.ListField(child=serializers.UUIDField())


class SystemRefSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class RegistrationSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    system = SystemRefSerializer()
    registered_at = serializers.CharField()
    sealed = serializers.BooleanField()
    batch = serializers.IntegerField(allow_null=True)
    leaf_index = serializers.IntegerField(allow_null=True)
    receipt_url = serializers.URLField()


class LookupAnswerSerializer(serializers.Serializer):
    sha256 = serializers.CharField()
    registrations = RegistrationSerializer(many=True)


def _receipt_url(request: Request, document: Document) -> str:
    return request.build_absolute_uri(
        reverse("entry-receipt", kwargs={"entry_id": document.entry.uuid})
    )


def document_answer(document: Document, request: Request) -> dict[str, Any]:
    entry = document.entry
    return {
        "id": str(entry.uuid),
        "sha256": document.sha256,
        "leaf_hash": bytes(entry.leaf_hash).hex(),
        "received_at": format_time(entry.received_at),
        "set": entry.set_note,
        "receipt_url": _receipt_url(request, document),
        "stored": bool(document.file),
        "private": document.private,
        "decisions": sorted(
            str(entry_id) for entry_id in document.decisions.values_list("entry__uuid", flat=True)
        ),
    }


class DocumentView(SystemAPIView):
    parser_classes = [HashingMultiPartParser, IJSONParser]

    def keeps_uploads(self, request: Request) -> bool:
        """Asked by HashingMultiPartParser: whether to write the upload to disk at all."""
        return isinstance(request.auth, SystemAPIKey) and request.auth.system.store_documents

    @extend_schema(
        summary="Register a document: upload it, or send its SHA-256",
        description=(
            "multipart/form-data with a `file` part (hashed as it streams; kept only if the "
            "AI system stores documents), or JSON with `sha256`. The same digest registered "
            "again answers 200 with the first registration."
        ),
        request={
            "multipart/form-data": DocumentSerializer,
            "application/json": DocumentSerializer,
        },
        responses={201: DocumentAnswerSerializer, 200: DocumentAnswerSerializer, 400: BAD_REQUEST},
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.data, QueryDict) and len(request.data.getlist("file")) > 1:
            raise ValidationError({"file": ["send one file per request"]})
        incoming = DocumentSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        upload = data.get("file")
        try:
            document, created = document_register(
                system=request.auth.system,
                sha256=data["sha256"],
                size=data.get("size"),
                media_type=data.get("media_type"),
                private=data["private"],
                decision_ids=data["decisions"],
                content=upload if upload is not None and upload.kept else None,
            )
        except UnknownDecisions as exc:
            raise ValidationError({"decisions": [str(exc)]}) from exc
        return Response(
            document_answer(document, request),
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class DocumentLookupThrottle(FixedWindowThrottle):
    """Per API key for AI systems, per client address for everyone else; lookups go on while
    the cache is down."""

    scope = "document_lookup"

    def get_rate(self) -> str:
        return api_settings.DEFAULT_THROTTLE_RATES.get(self.scope) or DEFAULT_LOOKUP_RATE

    def get_cache_key(self, request: Request, view: Any) -> str:
        if isinstance(request.auth, SystemAPIKey):
            ident = f"key:{request.auth.prefix}"
        else:
            ident = f"addr:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class DocumentLookupView(APIView):
    permission_classes = [AllowAny]
    throttle_classes = [DocumentLookupThrottle]

    @extend_schema(
        summary="Who registered this document, and where it is in the log",
        description=(
            "Public: the registrations of public documents by public AI systems; with an "
            "AI system's key, also all of that system's own. Oldest first, at most "
            f"{document_selectors.LOOKUP_LIMIT}."
        ),
        responses={
            200: LookupAnswerSerializer,
            400: BAD_REQUEST,
            404: NOT_FOUND,
            429: TOO_MANY,
        },
    )
    def get(self, request: Request, sha256: str) -> Response:
        if not re.fullmatch(HEX_SHA256_ANY_CASE, sha256):
            raise ValidationError({"sha256": ["must be a SHA-256 digest: 64 hex digits"]})
        sha256 = sha256.lower()
        system = request.auth.system if isinstance(request.auth, SystemAPIKey) else None
        documents = document_selectors.documents_visible(sha256=sha256, system=system)
        if not documents:
            raise NotFound(f"no registration of {sha256} that you may see")
        registrations = []
        for document in documents:
            position = document_selectors.document_position(document=document)
            registrations.append(
                {
                    "id": str(document.entry.uuid),
                    "system": {"slug": document.system.slug, "name": document.system.name},
                    "registered_at": format_time(document.entry.received_at),
                    "sealed": position is not None,
                    "batch": position.batch if position else None,
                    "leaf_index": position.leaf_index if position else None,
                    "receipt_url": _receipt_url(request, document),
                }
            )
        response = Response({"sha256": sha256, "registrations": registrations})
        # What a key holder sees differs from the public answer.
        patch_vary_headers(response, ["Authorization"])
        return response
