"""RFC 8785 (JCS) canonical JSON, byte for byte as the `rfc8785` package writes it, faster."""

from __future__ import annotations

import json
from typing import Any

import rfc8785

CanonicalizationError = rfc8785.CanonicalizationError

MAX_SAFE_INTEGER = 2**53 - 1
# Python's repr of a float (what the C JSON encoder writes) is ECMAScript's Number::toString,
# which RFC 8785 prescribes, for every non-integral float from 1e-4 up: both give the shortest
# digits that round-trip, in plain notation. Integral floats below 2^53 print as integers there.
PLAIN_FLOAT_MIN = 1e-4

# The C encoder escapes strings exactly as RFC 8785 says (the two short forms and \u00xx for
# the other controls, nothing else) and, with every key a BMP string, sorts members by UTF-16
# code units as RFC 8785 does.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    check_circular=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
)


class _Unusual(Exception):
    """A value this fast path does not write itself: `rfc8785` writes it (or raises for it)."""


def _prepared(value: Any) -> Any:
    """The value as the C encoder must see it: integral floats as ints; the same object when
    nothing changes. Raises _Unusual for anything else than the plain JSON types, integers
    beyond ±(2^53 - 1), floats that need exponents or are not finite, and keys beyond the BMP."""
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value
        raise _Unusual
    if kind is float:
        if value.is_integer():
            if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
                return int(value)  # -0.0 too: "0"
        # Non-integral floats are below 2^53; NaN and the infinities fail the comparison.
        elif PLAIN_FLOAT_MIN <= abs(value) < MAX_SAFE_INTEGER:
            return value
        raise _Unusual
    if kind is dict:
        changed: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) <= "\uffff"):
                raise _Unusual
            ready = _prepared(item)
            if ready is not item:
                if changed is None:
                    changed = dict(value)
                changed[key] = ready
        return value if changed is None else changed
    if kind is list or kind is tuple:
        items: list[Any] | None = None
        for position, item in enumerate(value):
            ready = _prepared(item)
            if ready is not item:
                if items is None:
                    items = list(value)
                items[position] = ready
        return value if items is None else items
    raise _Unusual


def dumps(value: Any) -> bytes:
    """RFC 8785 bytes of value; CanonicalizationError (a ValueError) for what is not I-JSON."""
    try:
        return _ENCODER.encode(_prepared(value)).encode("utf-8")
    except (_Unusual, UnicodeEncodeError):  # a lone surrogate: rfc8785 says which error
        return rfc8785.dumps(value)
