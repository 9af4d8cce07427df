"""The fast RFC 8785 encoder against the `rfc8785` package: the same bytes, the same refusals."""

from __future__ import annotations

import math
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from timestamping import canonical

SAFE = 2**53 - 1

# Keys and strings from all of Unicode (surrogates aside: see below), controls and characters
# beyond the BMP included, so that escaping and the UTF-16 order of members are exercised.
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-SAFE, SAFE)
    | floats
    # Floats near the edges of plain notation, and integral ones beyond 2^53.
    | st.sampled_from([1e-4, 9.999e-5, 1e-7, 1e16, 1e21, 2.0**53, 2.0**60, 1e300, 5e-324, -0.0])
    | text
)
ijson = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.tuples(children, children)
        | st.dictionaries(text, children, max_size=5)
    ),
    max_leaves=30,
)


@hypothesis_settings(max_examples=2000, deadline=None)
@given(ijson)
def test_every_i_json_value_is_written_as_rfc8785_writes_it(value: Any) -> None:
    assert canonical.dumps(value) == rfc8785.dumps(value)


@hypothesis_settings(max_examples=500, deadline=None)
@given(floats)
def test_every_finite_float_is_written_as_rfc8785_writes_it(number: float) -> None:
    assert canonical.dumps(number) == rfc8785.dumps(number)
    assert canonical.dumps({"n": [number]}) == rfc8785.dumps({"n": [number]})


def test_members_are_ordered_by_utf16_code_units_not_code_points() -> None:
    # U+FF61 sorts before U+1F600 by code point, after it by UTF-16 (a surrogate pair D83D...).
    value = {"\uff61": 1, "\U0001f600": 2, "a": 3}
    assert canonical.dumps(value) == rfc8785.dumps(value)
    assert canonical.dumps(value).decode() == '{"a":3,"\U0001f600":2,"\uff61":1}'


@pytest.mark.parametrize(
    "value",
    [
        2**53,
        -(2**53),
        math.nan,
        math.inf,
        -math.inf,
        "\ud800",
        {"\udfff": 1},
        {1: "not a string key"},
        b"bytes",
        {"nested": [object()]},
    ],
    ids=repr,
)
def test_what_is_not_i_json_is_refused_as_rfc8785_refuses_it(value: Any) -> None:
    # A ValueError either way: CanonicalizationError, or UnicodeEncodeError for a key that is a
    # lone surrogate (rfc8785 fails to sort it), which callers catch alike.
    with pytest.raises(ValueError) as expected:
        rfc8785.dumps(value)
    with pytest.raises(type(expected.value)):
        canonical.dumps(value)


def test_subclasses_of_the_json_types_are_written_as_rfc8785_writes_them() -> None:
    class Label(str):
        def __str__(self) -> str:
            return "not this"

    class Count(int):
        pass

    value = {"label": Label("deny"), "count": Count(3), "flag": True, "ratio": 1.0}
    written = b'{"count":3,"flag":true,"label":"deny","ratio":1}'
    assert canonical.dumps(value) == rfc8785.dumps(value) == written
