"""Keeping the de-identified outcome counts up to date, in the transaction of each write."""

from __future__ import annotations

import datetime
import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from django.db import connection, transaction

from audit.models import Decision, Outcome
from audit.services.subjects import decision_personal_data
from bias.models import LABEL_MAX, NO_SCORE, UNKNOWN, AttributeSet, FinalOutcome, OutcomeCount
from timestamping import canonical

# Scores are bucketed on [0, 1] in steps of 1/SCORE_BUCKETS; scores outside are clamped into the
# end buckets. The LL144 scoring rate is known to this resolution (docs/bias.md).
SCORE_BUCKETS = 20
ABOVE_THRESHOLD = "score>=threshold"
BELOW_THRESHOLD = "score<threshold"


class Dims(NamedTuple):
    """One row of the counts table, in the column order of the upsert below."""

    system_id: int
    day: datetime.date
    model_version_id: int
    attribute_set_id: int
    predicted: str
    actual: str
    final: str
    reviewed: bool
    score_bucket: int


def label_of(output: dict[str, Any] | None, threshold: float | None = None) -> str:
    """A decision's or outcome's label: its `label`, else its `value`, else its score against the
    decision's threshold, else "unknown"."""
    if not output:
        return UNKNOWN
    label = output.get("label")
    if label is None:
        value = output.get("value")
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            label = value if isinstance(value, str) else format(value, "g")
    if label is None:
        score = output.get("score")
        if isinstance(score, int | float) and threshold is not None:
            return ABOVE_THRESHOLD if score >= threshold else BELOW_THRESHOLD
        return UNKNOWN
    return str(label).strip()[:LABEL_MAX] or UNKNOWN


def score_bucket(output: dict[str, Any] | None) -> int:
    score = (output or {}).get("score")
    if not isinstance(score, int | float) or isinstance(score, bool) or math.isnan(score):
        return NO_SCORE
    return min(SCORE_BUCKETS - 1, max(0, math.floor(score * SCORE_BUCKETS)))


def attributes_normalise(attributes: dict[str, Any] | None) -> dict[str, str]:
    """Names sorted, values as stripped strings; an empty value is the group "unknown"."""
    return {
        str(name): (str(value).strip()[:LABEL_MAX] or UNKNOWN) if value is not None else UNKNOWN
        for name, value in sorted((attributes or {}).items())
    }


def _digest(attributes: dict[str, str]) -> str:
    return hashlib.sha256(canonical.dumps(attributes)).hexdigest()


def _attribute_set_ids(system_id: int, sets: Iterable[dict[str, str]]) -> dict[str, int]:
    """The ids of these attribute sets by digest, creating the ones never seen."""
    wanted = {_digest(attributes): attributes for attributes in sets}
    found = dict(
        AttributeSet.objects.filter(system_id=system_id, digest__in=wanted).values_list(
            "digest", "id"
        )
    )
    missing = [digest for digest in wanted if digest not in found]
    if missing:
        # A concurrent writer may create the same set: the unique constraint lets one win.
        AttributeSet.objects.bulk_create(
            [
                AttributeSet(system_id=system_id, attributes=wanted[digest], digest=digest)
                for digest in missing
            ],
            ignore_conflicts=True,
        )
        found.update(
            AttributeSet.objects.filter(system_id=system_id, digest__in=missing).values_list(
                "digest", "id"
            )
        )
    return found


def _counts_change(deltas: Counter[Dims]) -> None:
    """Adds each delta to its row in one statement: INSERT .. ON CONFLICT DO UPDATE, atomic on
    PostgreSQL and SQLite alike, so concurrent writers never lose an increment. Rows go in sorted
    order so that two writers lock shared rows in the same order and cannot deadlock."""
    rows = sorted((dims, delta) for dims, delta in deltas.items() if delta)
    if not rows:
        return
    table = connection.ops.quote_name(OutcomeCount._meta.db_table)
    columns = [
        "system_id",
        "day",
        "model_version_id",
        "attribute_set_id",
        "predicted",
        "actual",
        "final",
        "reviewed",
        "score_bucket",
    ]
    names = ", ".join(connection.ops.quote_name(column) for column in columns)
    count = connection.ops.quote_name("count")
    for start in range(0, len(rows), 500):
        chunk = rows[start : start + 500]
        values = ", ".join(["(" + ", ".join(["%s"] * (len(columns) + 1)) + ")"] * len(chunk))
        params: list[Any] = []
        for dims, delta in chunk:
            params += [
                dims.system_id,
                connection.ops.adapt_datefield_value(dims.day),
                *dims[2:],
                delta,
            ]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} ({names}, {count}) VALUES {values} "  # noqa: S608
                f"ON CONFLICT ({names}) DO UPDATE SET {count} = {table}.{count} + excluded.{count}",
                params,
            )


def _day(decision: Decision) -> datetime.date:
    return decision.occurred_at.astimezone(datetime.UTC).date()


def counts_decisions_add(*, items: Sequence[tuple[Decision, dict[str, Any] | None]]) -> None:
    """Counts new decisions, each with the protected attributes it was sent with; called inside
    the transaction that records them (single and bulk ingestion)."""
    if not items:
        return
    by_system: dict[int, list[tuple[Decision, dict[str, str]]]] = {}
    for decision, attributes in items:
        by_system.setdefault(decision.system_id, []).append(
            (decision, attributes_normalise(attributes))
        )
    deltas: Counter[Dims] = Counter()
    for system_id, decisions in by_system.items():
        ids = _attribute_set_ids(system_id, (attributes for _, attributes in decisions))
        for decision, attributes in decisions:
            predicted = label_of(decision.output, decision.threshold)
            dims = Dims(
                system_id,
                _day(decision),
                decision.model_version_id,
                ids[_digest(attributes)],
                predicted,
                UNKNOWN,
                predicted,
                False,
                score_bucket(decision.output),
            )
            deltas[dims] += 1
    _counts_change(deltas)
    superseded = [decision.supersedes for decision, _ in items if decision.supersedes_id]
    for decision in superseded:
        if decision is not None:
            _decision_uncount(decision)


def _current(decision: Decision) -> Dims | None:
    """Where a stored decision is counted now, or None when that can no longer be known: its
    subject was erased (the attributes are unreadable) or it was corrected by a later decision."""
    personal = decision_personal_data(decision)
    if personal is None:
        return None
    attributes = attributes_normalise(personal["fields"].get("protected_attributes"))
    set_id = _attribute_set_ids(decision.system_id, [attributes])[_digest(attributes)]
    predicted = label_of(decision.output, decision.threshold)
    last = Outcome.objects.filter(decision=decision).order_by("-pk").only("actual").first()
    final = FinalOutcome.objects.filter(decision=decision).first()
    return Dims(
        decision.system_id,
        _day(decision),
        decision.model_version_id,
        set_id,
        predicted,
        label_of(last.actual) if last else UNKNOWN,
        final.label if final else predicted,
        final is not None,
        score_bucket(decision.output),
    )


def _locked(decision: Decision) -> Decision | None:
    """The decision, its row locked so that two moves of its count take turns; None when it was
    superseded (its count was removed then)."""
    # Only the decision's row: a lock on its entry would stall the sealer, one on its subject
    # could wait in a circle with an erasure (subject, then the log) behind our caller's entry.
    locked = (
        Decision.objects.select_for_update(of=("self",))
        .select_related("entry", "subject")
        .filter(pk=decision.pk)
        .first()
    )
    if locked is None or Decision.objects.filter(supersedes=locked).exists():
        return None
    return locked


def _move(before: Dims, after: Dims) -> None:
    if before != after:
        _counts_change(Counter({before: -1, after: 1}))


def counts_actual_set(*, decision: Decision, actual: dict[str, Any]) -> None:
    """Moves the decision's count from its previous actual outcome ("unknown" before the first)
    to this one; called by outcome_record in its transaction, after its entry (the log's lock,
    then the decision's row, as in a review's finalisation) and before its Outcome row."""
    with transaction.atomic():
        locked = _locked(decision)
        before = _current(locked) if locked else None
        if before is not None:
            _move(before, before._replace(actual=label_of(actual)))


def counts_final_set(*, decision: Decision, final_output: dict[str, Any]) -> None:
    """Records the final outcome after human review (an output dict, like Decision.output) and
    moves the decision's count there; called when a review becomes final, in its transaction.
    Calling it again with the same label moves nothing."""
    with transaction.atomic():
        locked = _locked(decision)
        before = _current(locked) if locked else None
        if locked is None or before is None:
            return
        label = label_of(final_output, locked.threshold)
        _move(before, before._replace(final=label, reviewed=True))
        FinalOutcome.objects.update_or_create(decision=locked, defaults={"label": label})


def _decision_uncount(decision: Decision) -> None:
    """A decision corrected by a later one stops counting: the correction counts instead."""
    decision = Decision.objects.select_related("entry", "subject").get(pk=decision.pk)
    before = _current(decision)
    if before is not None:
        _counts_change(Counter({before: -1}))
