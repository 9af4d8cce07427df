"""The API's JSON parser: I-JSON only (RFC 7493), with errors that name the problem."""

from __future__ import annotations

import json
import re
from typing import Any

from django.conf import settings
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import BaseParser

MAX_SAFE_INTEGER = 2**53 - 1


class PayloadTooLarge(APIException):
    status_code = 413
    default_detail = "the request body is too large"
    default_code = "payload_too_large"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ParseError(f"duplicate key {key!r}: I-JSON objects have unique member names")
        seen[key] = value
    return seen


def _safe_integer(text: str) -> int:
    value = int(text)
    if abs(value) > MAX_SAFE_INTEGER:
        raise ParseError(f"integer {text} is beyond ±(2^53 - 1): send it as a string")
    return value


def _no_constant(name: str) -> Any:
    raise ParseError(f"{name} is not JSON")


def _check_strings(value: Any, path: str = "$") -> None:
    """Lone surrogates (\\ud800 escapes) are valid JSON text but not I-JSON: not Unicode."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ParseError(f"{path} holds a lone surrogate: not a Unicode string") from exc
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key, f"{path} key")
            _check_strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for position, item in enumerate(value):
            _check_strings(item, f"{path}[{position}]")


MAX_DEPTH = 256
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_NOT_BRACKETS = bytes(set(range(256)) - set(b"[]{}"))


def _check_depth(raw: bytes) -> None:
    """Refuses nesting deeper than MAX_DEPTH before json.loads sees it: deep enough nesting
    overflows the C stack of its scanner, which kills the process rather than raising."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    for bracket in _STRING.sub(b"", raw).translate(None, _NOT_BRACKETS):
        depth += 1 if bracket in b"[{" else -1
        if depth > MAX_DEPTH:
            raise ParseError(f"the JSON is nested more than {MAX_DEPTH} levels deep")


def ijson_loads(raw: bytes) -> Any:
    _check_depth(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the body is not UTF-8 (byte {exc.start})") from exc
    try:
        value = json.loads(
            text,
            object_pairs_hook=_no_duplicate_keys,
            parse_int=_safe_integer,
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError as exc:
        raise ParseError("the JSON is nested too deeply") from exc
    # Only a \u escape decodes to a lone surrogate (UTF-8 bytes cannot hold one): without any,
    # the walk over every string is skipped.
    if b"\\u" in raw:
        _check_strings(value)
    return value


class IJSONParser(BaseParser):
    # Not a JSONParser subclass: DRF reads request.body for those, and Django would refuse an
    # over-size body with an HTML 400 before this parser could answer 413 in JSON.
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        request = (parser_context or {}).get("request")
        length = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            raise PayloadTooLarge(f"the body is {length} bytes; at most {limit} are accepted")
        raw = stream.read(settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1) if stream else b""
        if len(raw) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise PayloadTooLarge()
        return ijson_loads(raw)
