"""Guardrail rules: what an AI system may decide alone. Validated on publish, evaluated at
ingestion against the request in memory; pure Python, no Django."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from review.errors import ReviewError

ACTIONS = ("review", "reject")
COMPARISONS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "exists")
ORDERED = ("lt", "le", "gt", "ge")
# What a rule may look at. Not protected attributes, the subject's reference, the owner or the
# explanation: a guardrail keyed on who the person is would itself be the bias it guards against.
FIELDS = (
    "output.label",
    "output.score",
    "output.value",
    "confidence",
    "threshold",
    "solely_automated",
    "model.name",
    "model.version",
    "model.declared",
)
INPUTS_PREFIX = "inputs."
MAX_RULES = 200
MAX_DEPTH = 8
MAX_LIST = 1000
SAFE_INTEGER = 2**53


class PolicyError(ReviewError, ValueError):
    """A rule set that does not validate; the message names the rule and the problem."""


@dataclass(frozen=True)
class Verdict:
    """What the rules say about one decision: the action, and which rule decided it."""

    action: str  # "review" or "reject"
    rule_index: int  # 1-based, as people count rules
    rule_name: str

    @property
    def rule_label(self) -> str:
        return f"rule {self.rule_index}" + (f" ({self.rule_name})" if self.rule_name else "")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_finite_number(value: Any) -> bool:
    """An int within JSON's exact range or a finite float (math.isfinite would overflow on
    an int of hundreds of digits, so ints are bounded first)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) <= SAFE_INTEGER
    return isinstance(value, float) and math.isfinite(value)


def _check_scalar(value: Any, where: str) -> None:
    if value is None or isinstance(value, bool | str) or _is_finite_number(value):
        return
    raise PolicyError(f"{where}: value must be a string, a finite number, a boolean or null")


def _check_condition(condition: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise PolicyError(f"{where}: conditions nest deeper than {MAX_DEPTH}")
    if not isinstance(condition, dict):
        raise PolicyError(f"{where}: a condition must be an object")
    if "all" in condition or "any" in condition:
        key = "all" if "all" in condition else "any"
        if set(condition) != {key}:
            raise PolicyError(f"{where}: '{key}' takes no other keys")
        parts = condition[key]
        if not isinstance(parts, list) or not parts:
            raise PolicyError(f"{where}: '{key}' must be a non-empty list of conditions")
        for position, part in enumerate(parts):
            _check_condition(part, f"{where}.{key}[{position}]", depth + 1)
        return
    if "not" in condition:
        if set(condition) != {"not"}:
            raise PolicyError(f"{where}: 'not' takes no other keys")
        _check_condition(condition["not"], f"{where}.not", depth + 1)
        return
    unknown = sorted(set(condition) - {"field", "op", "value"})
    if unknown:
        raise PolicyError(f"{where}: unknown key {unknown[0]!r}")
    field = condition.get("field")
    if not isinstance(field, str) or not (
        field in FIELDS or (field.startswith(INPUTS_PREFIX) and len(field) > len(INPUTS_PREFIX))
    ):
        raise PolicyError(
            f"{where}: field must be one of {', '.join(FIELDS)} or inputs.<name>, not {field!r}"
        )
    op = condition.get("op")
    if op not in COMPARISONS:
        raise PolicyError(f"{where}: op must be one of {', '.join(COMPARISONS)}, not {op!r}")
    if "value" not in condition:
        raise PolicyError(f"{where}: value is missing")
    value = condition["value"]
    if op in ORDERED:
        if not _is_finite_number(value):
            raise PolicyError(f"{where}: '{op}' compares with a finite number")
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or len(value) > MAX_LIST:
            raise PolicyError(f"{where}: '{op}' takes a list of at most {MAX_LIST} values")
        for item in value:
            _check_scalar(item, where)
    elif op == "exists":
        if not isinstance(value, bool):
            raise PolicyError(f"{where}: 'exists' takes true or false")
    else:
        _check_scalar(value, where)


def policy_validate(rules: Any) -> list[dict[str, Any]]:
    """The rules, checked; PolicyError names the first problem ("rule 2.if.all[0]: ...")."""
    if not isinstance(rules, list):
        raise PolicyError("rules must be a JSON list")
    if len(rules) > MAX_RULES:
        raise PolicyError(f"at most {MAX_RULES} rules")
    for position, rule in enumerate(rules, start=1):
        where = f"rule {position}"
        if not isinstance(rule, dict):
            raise PolicyError(f"{where}: a rule must be an object")
        unknown = sorted(set(rule) - {"name", "if", "then"})
        if unknown:
            raise PolicyError(f"{where}: unknown key {unknown[0]!r}")
        name = rule.get("name", "")
        if not isinstance(name, str) or len(name) > 100:
            raise PolicyError(f"{where}: name must be a string of at most 100 characters")
        if rule.get("then") not in ACTIONS:
            raise PolicyError(f"{where}: then must be 'review' or 'reject'")
        if "if" not in rule:
            raise PolicyError(f"{where}: 'if' is missing")
        _check_condition(rule["if"], f"{where}.if", 1)
    return rules


MISSING = object()


def _lookup(facts: dict[str, Any], field: str) -> Any:
    value: Any = facts
    for part in field.split("."):
        if not isinstance(value, dict) or part not in value:
            return MISSING
        value = value[part]
    return value


def _equal(left: Any, right: Any) -> bool:
    # true == 1 in Python; in a rule a boolean equals only a boolean.
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left is right
    if _is_number(left) and _is_number(right):
        return bool(left == right)
    return type(left) is type(right) and left == right


def _compare(actual: Any, op: str, value: Any) -> bool:
    if op == "exists":
        return (actual is not MISSING) is value
    if actual is MISSING:  # a missing field matches no comparison: test presence with exists
        return False
    if op == "eq":
        return _equal(actual, value)
    if op == "ne":
        return not _equal(actual, value)
    if op == "in":
        return any(_equal(actual, item) for item in value)
    if op == "not_in":
        return not any(_equal(actual, item) for item in value)
    if not _is_number(actual):
        return False
    if op == "lt":
        return bool(actual < value)
    if op == "le":
        return bool(actual <= value)
    if op == "gt":
        return bool(actual > value)
    return bool(actual >= value)


def condition_holds(condition: dict[str, Any], facts: dict[str, Any]) -> bool:
    """Whether a validated condition holds for these facts; never raises on odd facts."""
    if "all" in condition:
        return all(condition_holds(part, facts) for part in condition["all"])
    if "any" in condition:
        return any(condition_holds(part, facts) for part in condition["any"])
    if "not" in condition:
        return not condition_holds(condition["not"], facts)
    return _compare(_lookup(facts, condition["field"]), condition["op"], condition["value"])


def policy_evaluate(rules: list[dict[str, Any]], facts: dict[str, Any]) -> Verdict | None:
    """The verdict of validated rules: the first rule that rejects, else the first that sends
    to review, else None. Rejection wins whatever the order, so that adding a review rule can
    never let through what another rule rejects."""
    first_review: Verdict | None = None
    for position, rule in enumerate(rules, start=1):
        if not condition_holds(rule["if"], facts):
            continue
        verdict = Verdict(rule["then"], position, rule.get("name", ""))
        if verdict.action == "reject":
            return verdict
        first_review = first_review or verdict
    return first_review


def decision_facts(data: dict[str, Any], *, model_declared: bool) -> dict[str, Any]:
    """What rules see of a decision request: validated fields, in memory only."""
    return {
        "output": data.get("output") or {},
        "confidence": data.get("confidence"),
        "threshold": data.get("threshold"),
        "solely_automated": data.get("solely_automated"),
        "model": {**data["model"], "declared": model_declared},
        "inputs": data.get("inputs") or {},
    }
