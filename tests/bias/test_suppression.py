"""Small-cell suppression cannot be undone: a public report does not depend on suppressed groups."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AISystem, ModelVersion
from audit.services.decisions import model_version_register
from bias.models import NO_SCORE, UNKNOWN, AttributeSet, OutcomeCount
from bias.selectors import bias_attributes, bias_report_build, bias_trends, min_cell
from bias.services import _digest, attributes_normalise
from tests.audit.conftest import AISystemFactory
from tests.bias import test_dashboard

pytestmark = pytest.mark.django_db

MIN_CELL = 10
DAY = datetime.date(2026, 3, 2)
SEXES = ("female", "male", None)  # None: not reported, the group "unknown"
RACES = ("Asian", "Black", "White")
CELLS = [(sex, race) for sex in SEXES for race in RACES]

# One row of the counts table: decision label, actual outcome, score bucket, how many.
row = st.tuples(
    st.sampled_from(("approve", "deny")),
    st.sampled_from(("repaid", "default", UNKNOWN)),
    st.sampled_from((NO_SCORE, 1, 5, 8)),
    st.integers(1, 12),
)
Rows = list[tuple[str, str, int, int]]


def small_rows(total: int) -> st.SearchStrategy[Rows]:
    """Rows of exactly `total` decisions (1 <= total < MIN_CELL): another suppressed cell."""
    return st.lists(
        st.tuples(
            st.sampled_from(("approve", "deny")),
            st.sampled_from(("repaid", "default", UNKNOWN)),
            st.sampled_from((NO_SCORE, 1, 5, 8)),
        ),
        min_size=total,
        max_size=total,
    ).map(lambda picks: [(*pick, 1) for pick in picks])


def table_store(system: AISystem, table: dict[tuple[str | None, str], Rows], day: datetime.date):
    model_version: ModelVersion = model_version_register(
        system=system, name="scorer", version="1.0"
    )[0]
    sets: dict[str, AttributeSet] = {}
    counts = []
    for (sex, race), rows in table.items():
        normal = attributes_normalise({"race": race, **({"sex": sex} if sex else {})})
        digest = _digest(normal)
        if digest not in sets:
            sets[digest] = AttributeSet.objects.get_or_create(
                system=system, digest=digest, defaults={"attributes": normal}
            )[0]
        merged: dict[tuple[str, str, int], int] = {}
        for label, actual, bucket, count in rows:
            merged[(label, actual, bucket)] = merged.get((label, actual, bucket), 0) + count
        counts += [
            OutcomeCount(
                system=system,
                model_version=model_version,
                day=day,
                attribute_set=sets[digest],
                predicted=label,
                actual=actual,
                final=label,
                score_bucket=bucket,
                count=count,
            )
            for (label, actual, bucket), count in merged.items()
        ]
    OutcomeCount.objects.bulk_create(counts)


def without_system(report: Any) -> Any:
    if isinstance(report, dict):
        return {
            key: without_system(value)
            for key, value in report.items()
            if key not in ("system", "system_name")
        }
    if isinstance(report, list):
        return [without_system(value) for value in report]
    return report


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    table=st.fixed_dictionaries({cell: st.lists(row, max_size=4) for cell in CELLS}),
    data=st.data(),
)
def test_a_public_report_is_the_same_whatever_the_suppressed_groups_hold(db, table, data):
    """Two count tables that differ only inside suppressed groups (fewer than MIN_CELL
    decisions each) give the same public report and trends, to the last figure: no total,
    marginal, share, median or p-value can be subtracted to recover a suppressed count or
    selected count."""
    assert min_cell() == MIN_CELL  # the default
    other = dict(table)
    suppressed = 0
    for cell, rows in table.items():
        total = sum(count for *_, count in rows)
        if 0 < total < MIN_CELL:
            suppressed += 1
            other[cell] = data.draw(st.integers(1, MIN_CELL - 1).flatmap(small_rows))
    first, second = AISystemFactory(is_public=True), AISystemFactory(is_public=True)
    table_store(first, table, DAY)
    table_store(second, other, DAY)
    reported = set(bias_attributes(system=first))
    assert reported == set(bias_attributes(system=second))
    for attributes in (["sex", "race"], ["race"], ["race", "sex"]):
        if not reported.issuperset(attributes):
            continue
        reports = [
            bias_report_build(system=system, attributes=attributes, public=True)
            for system in (first, second)
        ]
        assert without_system(reports[0]) == without_system(reports[1])
        trends = [
            bias_trends(system=system, attributes=attributes, public=True)
            for system in (first, second)
        ]
        assert trends[0] == trends[1]
        if attributes == ["sex", "race"]:
            assert reports[0]["summary"]["suppressed_groups"] == suppressed


loans = test_dashboard.loans


def test_the_reviewers_subtraction_finds_nothing(client, loans):
    """The review's case: race=Asian's marginal minus its shown intersections, and the total
    minus the shown groups, revealed the suppressed nonbinary|Asian group of 4."""
    response = client.get("/api/v1/bias/report", {"system": "loans", "attributes": "sex,race"})
    assert response.status_code == 200
    report = response.json()
    shown = [group for group in report["groups"] if not group["suppressed"]]
    hidden = [group for group in report["groups"] if group["suppressed"]]
    assert "nonbinary|Asian" in [group["key"] for group in hidden]
    assert report["total"] == sum(group["count"] for group in shown)
    assert report["labelled"] == sum(group["labelled"] for group in shown)
    assert report["scored"] == sum(group["scored"] for group in shown)
    for position, name in enumerate(report["attributes"]):
        for marginal in report["marginals"][name]:
            parts = [g for g in shown if g["key"].split("|")[position] == marginal["key"]]
            if marginal["suppressed"]:  # a value of suppressed groups only
                assert not parts and marginal["count"] is None
                continue
            assert marginal["count"] == sum(g["count"] for g in parts)
            assert marginal["selected"] == sum(g["selected"] for g in parts)
    for group in shown:
        assert group["share"] == pytest.approx(group["count"] / report["total"])
    assert "totals exclude suppressed groups" in test_dashboard.text_of(client.get("/bias/loans/"))
