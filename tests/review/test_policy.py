"""The rule evaluator on its own: validation messages, semantics, and its algebra."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from review.policy import (
    PolicyError,
    condition_holds,
    decision_facts,
    policy_evaluate,
    policy_validate,
)

FACTS = decision_facts(
    {
        "model": {"name": "m", "version": "1"},
        "output": {"label": "deny", "score": 0.3},
        "confidence": 0.65,
        "threshold": 0.5,
        "solely_automated": True,
        "inputs": {"amount": 60_000, "region": "north", "flags": {"urgent": True}},
    },
    model_declared=False,
)


def cond(field, op, value):
    return {"field": field, "op": op, "value": value}


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        (cond("output.label", "eq", "deny"), True),
        (cond("output.label", "ne", "deny"), False),
        (cond("confidence", "lt", 0.7), True),
        (cond("confidence", "ge", 0.65), True),
        (cond("confidence", "gt", 0.65), False),
        (cond("inputs.amount", "gt", 50_000), True),
        (cond("inputs.amount", "le", 50_000), False),
        (cond("inputs.region", "in", ["north", "east"]), True),
        (cond("inputs.region", "not_in", ["north"]), False),
        (cond("inputs.flags.urgent", "eq", True), True),
        (cond("inputs.flags.urgent", "eq", 1), False),  # a boolean equals only a boolean
        (cond("solely_automated", "eq", True), True),
        (cond("model.declared", "eq", False), True),
        (cond("inputs.missing", "exists", False), True),
        (cond("inputs.missing", "ne", "x"), False),  # a missing field matches no comparison
        (cond("inputs.region", "lt", 3), False),  # a string is not ordered against a number
        (cond("output.value", "exists", True), False),
        ({"not": cond("output.label", "eq", "deny")}, False),
        ({"any": [cond("confidence", "gt", 0.9), cond("inputs.amount", "gt", 1)]}, True),
        ({"all": [cond("confidence", "gt", 0.9), cond("inputs.amount", "gt", 1)]}, False),
    ],
)
def test_conditions_hold_as_documented(condition, holds):
    policy_validate([{"if": condition, "then": "review"}])
    assert condition_holds(condition, FACTS) is holds


def test_a_reject_wins_over_an_earlier_review_and_names_its_rule():
    rules = policy_validate(
        [
            {"name": "big", "if": cond("inputs.amount", "gt", 1), "then": "review"},
            {"if": cond("confidence", "gt", 0.99), "then": "reject"},
            {"name": "undeclared", "if": cond("model.declared", "eq", False), "then": "reject"},
        ]
    )
    verdict = policy_evaluate(rules, FACTS)
    assert (verdict.action, verdict.rule_index, verdict.rule_label) == (
        "reject",
        3,
        "rule 3 (undeclared)",
    )
    verdict = policy_evaluate(rules[:2], FACTS)
    assert (verdict.action, verdict.rule_label) == ("review", "rule 1 (big)")
    assert policy_evaluate([], FACTS) is None


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({}, "rules must be a JSON list"),
        (["x"], "rule 1: a rule must be an object"),
        ([{"if": cond("confidence", "lt", 1), "then": "approve"}], "rule 1: then must be"),
        ([{"then": "review"}], "rule 1: 'if' is missing"),
        ([{"if": cond("protected_attributes.sex", "eq", "f"), "then": "review"}], "field must be"),
        ([{"if": cond("inputs.", "eq", 1), "then": "review"}], "field must be"),
        ([{"if": cond("confidence", "lt", "high"), "then": "review"}], "'lt' compares with"),
        ([{"if": cond("confidence", "in", 1), "then": "review"}], "'in' takes a list"),
        ([{"if": cond("confidence", "exists", 1), "then": "review"}], "'exists' takes true"),
        ([{"if": cond("confidence", "eq", 2**60), "then": "review"}], "finite number"),
        # 400 digits: math.isfinite would raise OverflowError on it.
        ([{"if": cond("confidence", "gt", 10**400), "then": "review"}], "'gt' compares with"),
        ([{"if": cond("confidence", "le", -(10**400)), "then": "review"}], "'le' compares with"),
        ([{"if": cond("confidence", "in", [10**400]), "then": "review"}], "finite number"),
        ([{"if": cond("confidence", "lt", float("inf")), "then": "review"}], "'lt' compares with"),
        ([{"if": {"field": "confidence", "op": "eq"}, "then": "review"}], "value is missing"),
        ([{"if": {"all": []}, "then": "review"}], "non-empty list"),
        ([{"if": {"all": [], "any": []}, "then": "review"}], "takes no other keys"),
        ([{"if": cond("confidence", "lt", 1), "then": "review", "else": 1}], "unknown key 'else'"),
        (
            [
                {
                    "if": {
                        "not": {
                            "not": {
                                "not": {
                                    "not": {
                                        "not": {
                                            "not": {"not": {"not": cond("confidence", "lt", 1)}}
                                        }
                                    }
                                }
                            }
                        }
                    },
                    "then": "review",
                }
            ],
            "nest deeper",
        ),
    ],
)
def test_bad_rules_are_refused_naming_the_place_and_the_problem(rules, message):
    with pytest.raises(PolicyError, match=message.replace("(", r"\(").replace(".", r"\.")):
        policy_validate(rules)


FIELDS = ["confidence", "output.label", "output.score", "inputs.amount", "inputs.region"]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
numbers = st.one_of(st.integers(-1000, 1000), st.floats(-1e6, 1e6, allow_nan=False))
comparisons = st.one_of(
    st.builds(cond, st.sampled_from(FIELDS), st.sampled_from(["lt", "le", "gt", "ge"]), numbers),
    st.builds(cond, st.sampled_from(FIELDS), st.sampled_from(["eq", "ne"]), scalars),
    st.builds(
        cond,
        st.sampled_from(FIELDS),
        st.sampled_from(["in", "not_in"]),
        st.lists(scalars, max_size=3),
    ),
    st.builds(cond, st.sampled_from(FIELDS), st.just("exists"), st.booleans()),
)
conditions = st.recursive(
    comparisons,
    lambda inner: st.one_of(
        st.builds(lambda c: {"not": c}, inner),
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
    ),
    max_leaves=8,
)
facts = st.fixed_dictionaries(
    {
        "confidence": st.one_of(st.none(), st.floats(0, 1)),
        "output": st.fixed_dictionaries(
            {}, optional={"label": st.text(max_size=3), "score": numbers}
        ),
        "inputs": st.fixed_dictionaries({}, optional={"amount": scalars, "region": scalars}),
    }
)


def depth(condition) -> int:
    if "not" in condition:
        return 1 + depth(condition["not"])
    for key in ("all", "any"):
        if key in condition:
            return 1 + max(depth(part) for part in condition[key])
    return 1


@given(conditions, facts)
def test_every_valid_condition_evaluates_to_a_boolean_and_not_negates_it(condition, fact):
    if depth(condition) > 7:
        return
    policy_validate([{"if": condition, "then": "review"}])
    holds = condition_holds(condition, fact)
    assert isinstance(holds, bool)
    assert condition_holds({"not": condition}, fact) is (not holds)


@given(st.lists(conditions, min_size=1, max_size=4), facts)
def test_de_morgan_holds_for_all_and_any(parts, fact):
    if any(depth(part) > 6 for part in parts):
        return
    negated = [{"not": part} for part in parts]
    assert condition_holds({"not": {"all": parts}}, fact) is condition_holds({"any": negated}, fact)
    assert condition_holds({"not": {"any": parts}}, fact) is condition_holds({"all": negated}, fact)


@given(conditions, facts)
def test_ne_is_the_negation_of_eq_on_present_fields_and_both_fail_on_missing(condition, fact):
    if "field" not in condition or condition["op"] not in ("eq", "ne"):
        return
    eq = condition_holds({**condition, "op": "eq"}, fact)
    ne = condition_holds({**condition, "op": "ne"}, fact)
    present = condition_holds({**condition, "op": "exists", "value": True}, fact)
    assert (eq != ne) if present else (not eq and not ne)


@given(st.lists(st.tuples(conditions, st.sampled_from(["review", "reject"])), max_size=5), facts)
def test_the_verdict_is_reject_iff_some_reject_rule_holds(rules, fact):
    rules = [{"if": c, "then": then} for c, then in rules if depth(c) <= 7]
    verdict = policy_evaluate(rules, fact)
    holding = [rule["then"] for rule in rules if condition_holds(rule["if"], fact)]
    if "reject" in holding:
        assert verdict.action == "reject"
    elif holding:
        assert verdict.action == "review"
    else:
        assert verdict is None
