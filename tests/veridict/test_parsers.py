"""The API's JSON parser: the depth check before json.loads, and what every parser may answer."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest
from django.test import RequestFactory
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rest_framework.exceptions import ParseError

from audit import api_bulk
from veridict.parsers import (
    MAX_DEPTH,
    IJSONParser,
    PayloadTooLarge,
    ijson_loads,
    json_depth_check,
)

PROPERTY = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def adversarial(size: int, depth: int = MAX_DEPTH + 1) -> bytes:
    """Nesting past the limit, then a string of escaped quotes that never ends: quadratic for a
    regex that skips strings, as the old pre-checks were."""
    head = b"[" * depth + b'"'
    return head + b'\\"' * ((size - len(head)) // 2)


def json_prefix(raw: bytes) -> bytes:
    """`raw` up to its first backslash that is not JSON: outside a string, or an escape of a
    byte no escape names. json.loads stops there (or before), so what follows cannot matter."""
    in_string = escaped = False
    for position, byte in enumerate(raw):
        if in_string:
            if escaped:
                if byte not in b'"\\/bfnrtu':
                    return raw[: position - 1]
                escaped = False
            elif byte == ord("\\"):
                escaped = True
            elif byte == ord('"'):
                in_string = False
        elif byte == ord('"'):
            in_string = True
        elif byte == ord("\\"):
            return raw[:position]
    return raw


def depth_naive(raw: bytes) -> int:
    """The reference: one byte at a time, in or out of a string, escape pending or not."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == ord("\\"):
                escaped = True
            elif byte == ord('"'):
                in_string = False
        elif byte == ord('"'):
            in_string = True
        elif byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    return deepest


def depth_of_value(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth_of_value, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth_of_value, value), default=0)
    return 0


def refused(raw: bytes, limit: int) -> bool:
    try:
        json_depth_check(raw, limit=limit)
    except ParseError:
        return True
    return False


# Bytes that matter to the scan, often, and any other byte now and then.
STRUCTURE = st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"\\\\", b'\\"', b"a", b","])
NOISY_BYTES = st.lists(st.one_of(STRUCTURE, st.binary(max_size=3)), max_size=80).map(b"".join)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=40,
)


@PROPERTY
@given(raw=NOISY_BYTES, limit=st.integers(0, 12))
@example(raw=b'["\\\\"[[', limit=1)
@example(raw=b'"[""[""["', limit=0)
@example(raw=b'\\"[', limit=0)
@example(raw=b'"\\x"[', limit=0)
def test_the_depth_check_agrees_with_a_byte_by_byte_automaton(raw, limit):
    prefix = json_prefix(raw)
    too_deep = depth_naive(prefix) > limit
    assert refused(prefix, limit) == too_deep
    if too_deep:
        assert refused(raw, limit)


@PROPERTY
@given(value=JSON_VALUES, limit=st.integers(0, 8), indent=st.sampled_from([None, 1]))
def test_the_depth_check_agrees_with_the_depth_of_the_parsed_value(value, limit, indent):
    raw = json.dumps(value, indent=indent, ensure_ascii=False).encode()
    assert refused(raw, limit) == (depth_of_value(value) > limit)


def test_the_depth_check_takes_linear_time_on_the_adversarial_body():
    started = time.perf_counter()
    with pytest.raises(ParseError, match=f"nested deeper than {MAX_DEPTH} levels"):
        ijson_loads(adversarial(8 * 1024 * 1024))
    # The regex pre-check took 4.3 s at 32 KB, quadratic; a linear scan takes milliseconds.
    assert time.perf_counter() - started < 2


def test_brackets_nested_at_the_limit_parse():
    raw = b"[" * MAX_DEPTH + b'"\\"[[[\\\\"' + b"]" * MAX_DEPTH
    assert depth_of_value(ijson_loads(raw)) == MAX_DEPTH


def parsers_answer(raw: bytes) -> None:
    """Every way a body reaches json.loads; each must parse or answer a 4xx-type error."""
    try:
        ijson_loads(raw)
    except ParseError:
        pass
    request = RequestFactory().post("/api/v1/decisions", raw, content_type="application/json")
    try:
        IJSONParser().parse(io.BytesIO(raw), parser_context={"request": request})
    except (ParseError, PayloadTooLarge):
        pass
    serializer = api_bulk.BulkDecisionSerializer()
    for index, line in enumerate(api_bulk.ndjson_records(io.BytesIO(raw))):
        item = api_bulk.bulk_item(index, line, serializer)
        assert item.error is not None or item.data is not None
    try:
        for index, element in enumerate(api_bulk.json_array_records(io.BytesIO(raw))):
            api_bulk.bulk_item(index, element, serializer)
    except ParseError:
        pass


@PROPERTY
@given(raw=st.one_of(NOISY_BYTES, st.binary(max_size=200)))
@example(raw=adversarial(4096))
@example(raw=adversarial(4096, depth=70))
@example(raw=b"[" + adversarial(4096, depth=70))
@example(raw=b"[" * 100_000)
@example(raw=b'{"a": 99999999999999999}')
@example(raw=b'{"a": "\\ud800"}')
def test_every_parser_parses_or_answers_a_client_error(raw):
    parsers_answer(raw)
