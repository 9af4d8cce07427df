"""POST /api/v1/decisions/bulk: up to 10,000 decisions as NDJSON or a JSON array, streamed."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import IO, Any

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import (
    APIException,
    ParseError,
    UnsupportedMediaType,
    ValidationError,
)
from rest_framework.request import Request
from rest_framework.response import Response

from audit.api import DECISION_EXAMPLE, SystemAPIView
from audit.serializers import DecisionSerializer
from audit.services.bulk import (
    BULK_MAX_RECORDS,
    BulkContention,
    BulkItem,
    decisions_bulk_record,
    record_error,
)
from timestamping.api import ErrorSerializer
from veridict.parsers import PayloadTooLarge, ijson_loads

NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines")
JSON_TYPE = "application/json"
READ_SIZE = 64 * 1024
# Deeper records are refused before json.loads, and before the canonicalisation and checks that
# recurse over a record: past Python's recursion limit they would end the request with a 500.
MAX_DEPTH = 64

POLICY = f"""Records up to {BULK_MAX_RECORDS:,} decisions in one request, each as
`POST /api/v1/decisions` would.

The body is NDJSON (`Content-Type: application/x-ndjson`, one JSON object per line; blank lines are
skipped) or a JSON array of objects (`application/json`). It is read as a stream, record by record.
Each record is a decision request as for the single endpoint, plus an optional `idempotency_key`
(the single endpoint's `Idempotency-Key` header), and must be I-JSON on its own. A record's
`supersedes` must name a decision recorded before this request.

**A bad record fails only itself.** The answer is `200` whenever the body could be read, with one
result per record in input order (`index` counts records from 0, blank NDJSON lines not counted):

- `201` recorded: `id` (the entry id) and `leaf_hash`;
- `200` a replay: the same idempotency key or client decision id with the same content, stored
  before or earlier in this body; `id` and `leaf_hash` are the first record's;
- `409` the idempotency key or client decision id was used for different content, or the
  decision named in `supersedes` is already superseded;
- `400` refused: malformed or not I-JSON, a wrong or unknown field; `error.fields` names them.

**All good records are committed together in one durable transaction before the answer is sent**:
every `201` and `200` in the answer is durable, and a request that fails as a whole (a 4xx or
5xx status) recorded none of its records (a model version it named for the first time stays
registered, undeclared). After a lost answer, send the same body again: client decision ids and
idempotency keys make each record a replay of what was recorded.

The request fails as a whole with `413` past {BULK_MAX_RECORDS:,} records or past the body size
limit, `415` for another content type, `400` for an empty body or a JSON array whose structure
breaks (a record cannot be told from the next; a malformed NDJSON line fails only itself), and
`503` with `Retry-After` when concurrent requests kept taking the same keys."""


class TooManyRecords(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_many_records"


class Contention(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "contention"


class BulkDecisionSerializer(DecisionSerializer):
    idempotency_key = serializers.CharField(
        min_length=1,
        max_length=255,
        required=False,
        help_text="Per record, what the Idempotency-Key header is to the single endpoint.",
    )


BulkAnswerSerializer = inline_serializer(
    "BulkAnswer",
    {
        "results": inline_serializer(
            "BulkRecordResult",
            {
                "index": serializers.IntegerField(),
                "status": serializers.ChoiceField(choices=[200, 201, 400, 409]),
                "id": serializers.UUIDField(required=False),
                "leaf_hash": serializers.CharField(required=False),
                "error": inline_serializer(
                    "BulkRecordError",
                    {
                        "code": serializers.CharField(),
                        "message": serializers.CharField(),
                        "fields": serializers.DictField(),
                    },
                    required=False,
                ),
            },
            many=True,
        ),
        "created": serializers.IntegerField(),
        "replayed": serializers.IntegerField(),
        "failed": serializers.IntegerField(),
    },
)


def ndjson_records(stream: IO[bytes] | None) -> Iterator[bytes]:
    """The non-blank lines of the body, one at a time, reading it in blocks (a server's
    readline() may read a few bytes at a time)."""
    parts: list[bytes] = []  # of a line not yet ended: joined once, whatever its length
    while stream is not None:
        block = stream.read(READ_SIZE)
        if not block:
            break
        start = 0
        while (end := block.find(b"\n", start)) >= 0:
            parts.append(block[start:end])
            line = b"".join(parts)
            parts = []
            start = end + 1
            if line.strip():
                yield line
        parts.append(block[start:])
    line = b"".join(parts)
    if line.strip():
        yield line


# A whole string (escapes included), a bracket or comma, or an opening quote whose string is not
# all in the buffer yet. Possessive: a string that does not end fails in one pass over it, with
# no backtracking (which cost time in its length per attempt).
_TOKEN = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{},]|"', re.DOTALL)
_CLOSING = {ord("]"): ord("["), ord("}"): ord("{")}


def json_array_records(stream: IO[bytes] | None) -> Iterator[bytes]:
    """The elements of a top-level JSON array, each as its bytes, reading the body in blocks.

    Only strings and brackets are scanned here; each element is parsed on its own afterwards, so
    one bad record fails only itself. What breaks the array's structure fails the request.
    """
    buffer = bytearray()
    offset = 0  # of buffer[0] in the body
    position = 0  # scanning resumes here
    start: int | None = None  # of the current element, while inside the array
    stack = bytearray()  # open brackets
    count = 0  # elements yielded
    closed = False
    ended = stream is None

    def broken(problem: str, at: int) -> ParseError:
        return ParseError(f"malformed JSON array at byte {offset + at}: {problem}")

    while True:
        match = _TOKEN.search(buffer, position)
        if match is None or match.group() == b'"':
            if ended:
                if match is not None:
                    raise broken("a string is not closed", match.start())
                break
            # Keep what the current element needs; read at least as much again, so that a large
            # element costs linear time.
            keep = start if start is not None else position
            del buffer[:keep]
            offset += keep
            position -= keep
            if start is not None:
                start = 0
            block = stream.read(max(READ_SIZE, len(buffer))) if stream is not None else b""
            if block:
                buffer += block
            else:
                ended = True
            continue
        between = buffer[position : match.start()]
        token = match.group()[0]
        position = match.end()
        if closed:
            raise broken("data after the end of the array", match.start())
        if not stack:
            if between.strip() or token != ord("["):
                raise broken("the body must be an array of records", match.start())
            stack.append(token)
            start = position
            continue
        if token in (ord("["), ord("{")):
            stack.append(token)
            if len(stack) > MAX_DEPTH + 1:
                raise broken(f"nested deeper than {MAX_DEPTH} levels", match.start())
        elif token in _CLOSING:
            if stack.pop() != _CLOSING[token]:
                raise broken(f"{chr(token)!r} closes a bracket of the other kind", match.start())
            if not stack:
                closed = True
                element = bytes(buffer[start : match.start()]).strip()  # type: ignore[index]
                start = None
                if element:
                    yield element
                elif count:
                    raise broken("a comma before the closing bracket", match.start())
        elif token == ord(",") and len(stack) == 1:
            count += 1
            yield bytes(buffer[start : match.start()]).strip()  # type: ignore[index]
            start = position
    if closed:
        if buffer[position:].strip():
            raise broken("data after the end of the array", position)
        return
    raise broken("the array is not closed" if stack else "the body is empty", position)


def _plain(detail: Any) -> Any:
    """DRF's error details as plain JSON values."""
    if isinstance(detail, dict):
        return {str(name): _plain(value) for name, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(value) for value in detail]
    return str(detail)


def _message(fields: dict[str, Any]) -> str:
    return "; ".join(
        f"{name}: {' '.join(map(str, errors)) if isinstance(errors, list) else errors}"
        for name, errors in fields.items()
    )


def bulk_item(index: int, raw: bytes, serializer: BulkDecisionSerializer) -> BulkItem:
    """One record parsed (I-JSON, as the single endpoint's parser checks it) and validated."""
    try:
        record = ijson_loads(raw, max_depth=MAX_DEPTH)
    except ParseError as exc:
        return BulkItem(index, error=record_error("parse_error", str(exc.detail)))
    if not isinstance(record, dict):
        message = f"a record must be a JSON object, not {type(record).__name__}"
        return BulkItem(index, error=record_error("parse_error", message))
    try:
        data = dict(serializer.run_validation(record))
    except ValidationError as exc:
        fields = _plain(exc.detail)
        if not isinstance(fields, dict):
            fields = {"non_field_errors": fields}
        return BulkItem(index, error=record_error("invalid", _message(fields), fields))
    key = data.pop("idempotency_key", None)
    return BulkItem(index, data=data, idempotency_key=key)


def bulk_items(request: Request) -> list[BulkItem]:
    """Every record of the body, validated, in order; the body itself is never held whole."""
    limit = settings.API_MAX_BODY_BYTES
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > limit:
        raise PayloadTooLarge(f"the body is {length} bytes; at most {limit} are accepted")
    media_type = (request.content_type or "").split(";")[0].strip().lower()
    if media_type in NDJSON_TYPES:
        raw_records = ndjson_records(request.stream)
    elif media_type == JSON_TYPE:
        raw_records = json_array_records(request.stream)
    else:
        raise UnsupportedMediaType(
            media_type or "none",
            detail=f"send {NDJSON_TYPES[0]} or {JSON_TYPE}, not {media_type or 'no content type'}",
        )
    serializer = BulkDecisionSerializer()  # one for all records: building its fields is costly
    items: list[BulkItem] = []
    for index, raw in enumerate(raw_records):
        if index == BULK_MAX_RECORDS:
            raise TooManyRecords(
                f"more than {BULK_MAX_RECORDS:,} records: send at most {BULK_MAX_RECORDS:,} "
                "per request"
            )
        items.append(bulk_item(index, raw, serializer))
    if not items:
        raise ParseError("the body holds no records")
    return items


class DecisionBulkView(SystemAPIView):
    @extend_schema(
        summary="Record up to 10,000 decisions",
        description=POLICY,
        request={
            "application/x-ndjson": BulkDecisionSerializer,
            JSON_TYPE: BulkDecisionSerializer(many=True),
        },
        examples=[
            OpenApiExample(
                "Two loan decisions",
                value=[
                    {**DECISION_EXAMPLE, "idempotency_key": "c0ffee-1"},
                    {**DECISION_EXAMPLE, "client_decision_id": "loan-2026-000124"},
                ],
                request_only=True,
                media_type=JSON_TYPE,
            )
        ],
        responses={
            200: BulkAnswerSerializer,
            400: OpenApiResponse(ErrorSerializer, description="No records, or a broken array."),
            413: OpenApiResponse(ErrorSerializer, description="Too many records or bytes."),
            415: OpenApiResponse(ErrorSerializer, description="Neither NDJSON nor JSON."),
            503: OpenApiResponse(ErrorSerializer, description="Contention: retry later."),
        },
    )
    def post(self, request: Request) -> Response:
        items = bulk_items(request)
        try:
            results = decisions_bulk_record(system=request.auth.system, items=items)
        except BulkContention as exc:
            raise Contention(str(exc)) from exc
        statuses = [result.status for result in results]
        return Response(
            {
                "results": [result.as_dict() for result in results],
                "created": statuses.count(201),
                "replayed": statuses.count(200),
                "failed": statuses.count(400) + statuses.count(409),
            }
        )

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, Contention):
            response["Retry-After"] = "1"
        return response
