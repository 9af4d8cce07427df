"""Small cells cannot be recovered: no combination of public answers depends on a dropped cell.

Public figures are sums over fixed cells (attribute set × model version × calendar month) of at
least BIAS_MIN_CELL decisions (docs/bias.md). The attacker below asks every public question it
can about two count tables that differ only inside dropped cells, and must get the same bytes.
"""

from __future__ import annotations

import datetime
import itertools
import re
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audit.models import AISystem
from audit.services.decisions import model_version_register
from bias.models import NO_SCORE, UNKNOWN, AttributeSet, OutcomeCount
from bias.selectors import min_cell
from bias.services import _digest, attributes_normalise
from tests.audit.conftest import AISystemFactory
from tests.bias import test_dashboard

pytestmark = pytest.mark.django_db

MIN_CELL = 10
# Attribute sets the tables use; the last one (a rare veteran) only ever has small cells, so
# even its attribute name must not show.
SETS = (
    {"sex": "female", "race": "Asian"},
    {"sex": "male", "race": "Asian"},
    {"sex": "female", "race": "Black"},
    {"sex": "male", "race": "Black"},
    {"race": "Black"},  # sex not reported: the group "unknown"
    {"sex": "female", "race": "Asian", "veteran": "yes"},
)
RARE = len(SETS) - 1
VERSIONS = ("1.0", "2.0")
MONTHS = (datetime.date(2026, 1, 1), datetime.date(2026, 2, 1))
DAYS = (0, 1, 13, 27)  # offsets in a month: its first, second, 14th and 28th day
CELLS = list(itertools.product(range(len(SETS)), VERSIONS, MONTHS))
D = datetime.date
WINDOWS = [
    *itertools.product(
        (None, D(2026, 1, 1), D(2026, 2, 1)), (None, D(2026, 1, 31), D(2026, 2, 28))
    ),
    # Windows that cut a month: refused for public readers, the same refusal for both tables.
    (D(2026, 1, 2), None),
    (None, D(2026, 2, 14)),
    (D(2026, 2, 1), D(2026, 2, 14)),
]
ATTRIBUTES = (["sex"], ["race"], ["sex", "race"], ["race", "sex"], ["veteran"], ["race", "veteran"])
VALUES = {
    "sex": ("female", "male", UNKNOWN),
    "race": ("Asian", "Black"),
    "veteran": ("yes", UNKNOWN),
}

# One row of a cell: day offset, decision label, actual outcome, score bucket, how many.
count_row = st.tuples(
    st.sampled_from(DAYS),
    st.sampled_from(("approve", "deny")),
    st.sampled_from(("repaid", "default", UNKNOWN)),
    st.sampled_from((NO_SCORE, 1, 5, 8, 15)),
    st.integers(1, 7),
)
Rows = list[tuple[int, str, str, int, int]]


def small_cell() -> st.SearchStrategy[Rows]:
    """A cell of 0 to MIN_CELL - 1 decisions, spread over the month's days at random."""
    return st.integers(0, MIN_CELL - 1).flatmap(
        lambda total: st.lists(
            count_row.map(lambda row: (*row[:4], 1)), min_size=total, max_size=total
        )
    )


def size(rows: Rows) -> int:
    return sum(row[-1] for row in rows)


def table_store(system: AISystem, table: dict[tuple[int, str, datetime.date], Rows]) -> None:
    """Replaces the system's counts with the table's (attribute sets are created as needed and
    never removed: one only a dropped cell ever used must not show either)."""
    OutcomeCount.objects.filter(system=system).delete()
    versions = {
        version: model_version_register(system=system, name="scorer", version=version)[0]
        for version in VERSIONS
    }
    merged: dict[tuple[Any, ...], int] = {}
    for (set_index, version, month), rows in table.items():
        for offset, label, actual, bucket, count in rows:
            day = month + datetime.timedelta(days=offset)
            key = (set_index, version, day, label, actual, bucket)
            merged[key] = merged.get(key, 0) + count
    sets: dict[int, AttributeSet] = {}
    counts = []
    for (set_index, version, day, label, actual, bucket), count in merged.items():
        if set_index not in sets:
            normal = attributes_normalise(SETS[set_index])
            sets[set_index] = AttributeSet.objects.get_or_create(
                system=system, digest=_digest(normal), defaults={"attributes": normal}
            )[0]
        counts.append(
            OutcomeCount(
                system=system,
                model_version=versions[version],
                day=day,
                attribute_set=sets[set_index],
                predicted=label,
                actual=actual,
                final="approve" if bucket == 15 else label,  # a review changed some
                reviewed=bucket == 15,
                score_bucket=bucket,
                count=count,
            )
        )
    OutcomeCount.objects.bulk_create(counts)


def answer_of(response: Any) -> tuple[int, str, bytes]:
    """What a reader gets, to the byte (the printable summary's clock line aside)."""
    body = re.sub(rb"<dt>Date of this summary</dt><dd>[^<]*</dd>", b"", response.content)
    return response.status_code, response.get("Content-Type", ""), body


def public_answers(
    system: AISystem, attributes: list[str], reference: str, outcome: str
) -> dict[str, Any]:
    """Every public question about these attributes and reference: each window × model
    version (and all versions) as JSON and CSV, the dashboard (monthly and weekly trends) and
    the printable summary over each window, and the default dashboard."""
    client = Client()
    # The default dashboard lists the attribute names one may tick.
    answers = {"/bias/": answer_of(client.get(f"/bias/{system.slug}/"))}
    for date_from, date_to in WINDOWS:
        window = {
            name: day.isoformat()
            for name, day in (("from", date_from), ("to", date_to))
            if day is not None
        }
        query = {"system": system.slug, "attributes": ",".join(attributes)}
        query |= {"reference": reference, "outcome": outcome, **window}
        for version in (None, *VERSIONS):
            for file_format in ("json", "csv"):
                asked = query | {"format": file_format}
                if version is not None:
                    asked["model_version"] = version
                answers[repr(asked)] = answer_of(client.get("/api/v1/bias/report", asked))
        page = {
            "attributes": ",".join(attributes),
            "reference": reference,
            "outcome": outcome,
            **{f"date_{name}": day for name, day in window.items()},
        }
        for period in ("month", "week"):
            asked = page | {"period": period}
            answers[repr(asked)] = answer_of(client.get(f"/bias/{system.slug}/", asked))
        answers[repr(page)] = answer_of(client.get(f"/bias/{system.slug}/summary", page))
    return answers


@st.composite
def questions(draw: st.DrawFn) -> tuple[list[str], str, str]:
    attributes = draw(st.sampled_from(ATTRIBUTES))
    groups = ["|".join(values) for values in itertools.product(*(VALUES[a] for a in attributes))]
    reference = draw(st.sampled_from(["largest", "most_favoured", *groups]))
    return attributes, reference, draw(st.sampled_from(("ai", "final")))


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    table=st.fixed_dictionaries(
        {
            cell: small_cell() if cell[0] == RARE else st.lists(count_row, max_size=4)
            for cell in CELLS
        }
    ),
    question=questions(),
    data=st.data(),
)
def test_tables_that_differ_only_in_dropped_cells_answer_every_public_question_alike(
    db, table, question, data
):
    """The attacker's view: windows, model versions, attributes, reference groups, outcomes,
    JSON, CSV, dashboard, trends and summary give byte-identical answers for two count tables
    whose cells under the minimum differ (in size, days, labels, or existence), so no linear
    combination of public answers pins down a dropped cell."""
    assert min_cell() == MIN_CELL  # the default
    other = {
        cell: data.draw(small_cell()) if size(rows) < MIN_CELL else rows
        for cell, rows in table.items()
    }
    system = AISystemFactory(is_public=True)
    table_store(system, table)
    first = public_answers(system, *question)
    table_store(system, other)
    second = public_answers(system, *question)
    assert first.keys() == second.keys()
    for asked, answer in first.items():
        assert answer == second[asked], asked


loans = test_dashboard.loans


def test_the_reviewers_subtraction_finds_nothing(client, loans):
    """The review's case: race=Asian's marginal minus its shown intersections, and the total
    minus the shown groups, revealed the small nonbinary|Asian group of 4. Now that group's
    cell is dropped before any figure: it is not listed, and every total and marginal is the
    sum of the groups shown."""
    response = client.get("/api/v1/bias/report", {"system": "loans", "attributes": "sex,race"})
    assert response.status_code == 200
    report = response.json()
    assert "nonbinary|Asian" not in [group["key"] for group in report["groups"]]
    shown = report["groups"]
    assert report["total"] == sum(group["count"] for group in shown)
    assert report["labelled"] == sum(group["labelled"] for group in shown)
    assert report["scored"] == sum(group["scored"] for group in shown)
    for position, name in enumerate(report["attributes"]):
        for marginal in report["marginals"][name]:
            parts = [g for g in shown if g["key"].split("|")[position] == marginal["key"]]
            assert marginal["count"] == sum(g["count"] for g in parts)
            assert marginal["selected"] == sum(g["selected"] for g in parts)
    for group in shown:
        assert group["share"] == pytest.approx(group["count"] / report["total"])
    page = test_dashboard.text_of(client.get("/bias/loans/"))
    assert "calendar month) of at least 10 decisions" in page


def test_the_issues_one_day_difference_is_refused_with_the_allowed_windows(client, loans):
    """from=2026-03-01 against from=2026-03-02 subtracted to one day's decisions: the second
    window is refused for the public, naming the windows allowed; staff keep day windows."""
    query = {"system": "loans", "attributes": "sex"}
    assert client.get("/api/v1/bias/report", query | {"from": "2026-03-01"}).status_code == 200
    refused = client.get("/api/v1/bias/report", query | {"from": "2026-03-02"})
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert "whole calendar months" in error["fields"]["from"][0]
    assert "from=2026-03-01&to=2026-04-30" in error["fields"]["from"][0]
    cut_end = client.get("/api/v1/bias/report", query | {"to": "2026-03-30"})
    assert cut_end.status_code == 400 and "to" in cut_end.json()["error"]["fields"]
    page = client.get("/bias/loans/", {"date_from": "2026-03-02"})
    assert page.status_code == 400
    assert "public reports cover whole calendar months" in test_dashboard.text_of(page)
    weekly = client.get("/bias/loans/", {"period": "week"})
    assert weekly.status_code == 400
    assert "public trends are by month" in test_dashboard.text_of(weekly)
    client.force_login(test_dashboard.staff_user())
    staff = client.get("/api/v1/bias/report", query | {"from": "2026-03-02"})
    assert staff.status_code == 200 and staff.json()["public"] is False
    preview = client.get("/api/v1/bias/report", query | {"from": "2026-03-02", "public": 1})
    assert preview.status_code == 400


def test_a_cell_counts_per_model_version_and_month_not_per_set(db):
    """Five decisions of a group by model 1.0 and six by model 2.0 in one month make 11 in an
    all-versions report, but the all-versions figure minus the 2.0 one would give the five: both
    cells are dropped, in every report."""
    system = AISystemFactory(is_public=True)
    rows = [(0, "approve", UNKNOWN, NO_SCORE, 20)]
    table = {(0, "1.0", MONTHS[0]): rows, (1, "1.0", MONTHS[0]): rows}
    table |= {(1, "1.0", MONTHS[1]): [(0, "deny", UNKNOWN, NO_SCORE, 5)]}
    table |= {(1, "2.0", MONTHS[1]): [(3, "approve", UNKNOWN, NO_SCORE, 6)]}
    table_store(system, table)
    client = Client()
    query = {"system": system.slug, "attributes": "sex"}
    everything = client.get("/api/v1/bias/report", query).json()
    version = client.get("/api/v1/bias/report", query | {"model_version": "2.0"}).json()
    assert {g["key"]: g["count"] for g in everything["groups"]} == {"female": 20, "male": 20}
    assert everything["total"] == 40 and everything["last_day"] == "2026-01-31"
    assert version["groups"] == [] and version["total"] == 0
    # A group whose cells are all dropped is no reference: the answer of a group never seen.
    assert client.get("/api/v1/bias/report", query | {"reference": "male"}).status_code == 200
    dropped = client.get(
        "/api/v1/bias/report", query | {"reference": "male", "model_version": "2.0"}
    ).json()
    absent = client.get(
        "/api/v1/bias/report", query | {"reference": "female", "model_version": "2.0"}
    ).json()
    assert dropped["error"]["fields"]["reference"] == ["no group 'male' in this window"]
    assert absent["error"]["fields"]["reference"] == ["no group 'female' in this window"]
