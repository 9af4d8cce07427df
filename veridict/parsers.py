"""The API's JSON parser: I-JSON only (RFC 7493), with errors that name the problem."""

from __future__ import annotations

import json
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


# Made once: json.loads with any option builds a decoder and its scanner on every call.
_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicate_keys, parse_constant=_no_constant)
_DECODER_SAFE_INTEGERS = json.JSONDecoder(
    object_pairs_hook=_no_duplicate_keys, parse_int=_safe_integer, parse_constant=_no_constant
)

MAX_DEPTH = 256
# What the checks before json.loads read: brackets, quotes, backslashes, every byte a valid
# escape may name after its backslash (deleting one of those would pair its backslash with the
# next byte), and digits, as "0".
_NOT_KEPT = bytes(set(range(256)) - set(b'[]{}"\\/bfnrtu0123456789'))
_DIGITS = bytes.maketrans(b"0123456789", b"0" * 10)
# Then only brackets and quotes, both kinds of bracket mapped to one: "[" opens, "]" closes.
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(set(range(256)) - set(b'[]{}"'))


def json_depth_check(raw: bytes, *, limit: int = MAX_DEPTH) -> None:
    """Refuses a JSON text whose brackets, strings skipped, nest deeper than `limit`, before
    json.loads sees it: deep enough nesting overflows the C stack of its scanner, and whatever
    recurses over the value afterwards (checks, canonicalisation) would end in a 500.

    Linear in the body and vectorised: a few passes of bytes methods, no regex, no per-byte
    Python loop except over the brackets near the limit. The depth is exact up to the first byte
    that is not JSON (an invalid escape, a backslash outside a string), and json.loads stops
    there, so what follows cannot matter.
    """
    _kept_depth_check(raw.translate(_DIGITS, _NOT_KEPT), limit=limit)


def _kept_depth_check(kept: bytes, *, limit: int) -> None:
    """json_depth_check on the bytes of the body it reads (_NOT_KEPT deleted, digits "0")."""
    if kept.count(b"[") + kept.count(b"{") <= limit:
        return
    if b"\\" in kept:
        # Backslashes only occur inside strings (before the first error). Removed left to right
        # in pairs, each run of them leaves at most one, which escapes the byte after it: so
        # dropping `\"` next removes exactly the escaped quotes.
        kept = kept.replace(b"\\\\", b"").replace(b'\\"', b"")
    structure = kept.translate(_BRACKETS, _NOT_STRUCTURE)
    # Every remaining quote opens or closes a string, in turn. Removing two adjacent quotes keeps
    # each other byte on its side (inside or outside), and clears the common case at C speed:
    # strings with no bracket in them.
    structure = structure.replace(b'""', b"")
    if b'"' in structure:
        structure = b"".join(structure.split(b'"')[::2])
    depth = position = 0
    while position < len(structure):
        # The next (limit - depth) brackets cannot take the depth past the limit, whatever they
        # are: count them at once, and step one bracket at a time only near the limit.
        step = max(limit - depth, 1)
        chunk = structure[position : position + step]
        depth += 2 * chunk.count(b"[") - len(chunk)
        position += step
        if depth > limit:
            raise ParseError(f"the JSON is nested deeper than {limit} levels")


def ijson_loads(raw: bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """The value of an I-JSON text (RFC 7493), or ParseError naming what is wrong with it."""
    kept = raw.translate(_DIGITS, _NOT_KEPT)  # read three times: depth, long integers, \u
    _kept_depth_check(kept, limit=max_depth)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the body is not UTF-8 (byte {exc.start})") from exc
    try:
        # Every integer past 2^53 - 1 has 16 digits or more, which stay a run in `kept`:
        # without one, json's own int() is enough, and saves a Python call per number.
        decoder = _DECODER_SAFE_INTEGERS if b"0" * 16 in kept else _DECODER
        value = decoder.decode(text)
    except json.JSONDecodeError as exc:
        raise ParseError(
            f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError as exc:
        raise ParseError("the JSON is nested too deeply") from exc
    # Only a \u escape decodes to a lone surrogate (UTF-8 bytes cannot hold one): without any,
    # the walk over every string is skipped. Any \u of the body is one in `kept` too.
    if b"\\u" in kept:
        _check_strings(value)
    return value


class IJSONParser(BaseParser):
    # Not a JSONParser subclass: DRF reads request.body for those, and Django would refuse an
    # over-size body with an HTML 400 before this parser could answer 413 in JSON.
    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):  # type: ignore[no-untyped-def]
        request = (parser_context or {}).get("request")
        length = int(request.META.get("CONTENT_LENGTH") or 0) if request is not None else 0
        if length > settings.API_MAX_BODY_BYTES:
            limit = settings.API_MAX_BODY_BYTES
            raise PayloadTooLarge(f"the body is {length} bytes; at most {limit} are accepted")
        raw = stream.read(settings.API_MAX_BODY_BYTES + 1) if stream else b""
        if len(raw) > settings.API_MAX_BODY_BYTES:
            raise PayloadTooLarge()
        return ijson_loads(raw)
