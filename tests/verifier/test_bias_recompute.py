"""The auditor's bias recomputation against Fairlearn, scipy and the server's own report."""

from __future__ import annotations

import ast
import copy
import dataclasses
import datetime
import json
import random
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_negative_rate,
    true_positive_rate,
)
from hypothesis import assume, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from scipy import stats
from veridict_verify import bias as recompute
from veridict_verify.bias import DecisionRecord, bias_report_recompute, report_compare

from audit.services.decisions import outcome_record
from bias.services import counts_final_set
from tests.audit.conftest import AISystemFactory

DAY = datetime.date(2026, 11, 26)
SAMPLED = hypothesis_settings(max_examples=40, deadline=None, derandomize=True)
# Fairlearn's name of each rate computed over the decisions with a known outcome.
LABELLED_RATES = {
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "fnr": false_negative_rate,
    "tnr": true_negative_rate,
}


# --- Against Fairlearn ---------------------------------------------------------------------------


def group_key(record: DecisionRecord, attributes: Sequence[str]) -> str:
    values = dict(recompute.attributes_normalise(record.attributes))
    return "|".join(values.get(name, "unknown") for name in attributes)


def favourable(record: DecisionRecord) -> bool:
    """Fairlearn's 1: a label of docs/bias.md's default list, compared case-insensitively."""
    return record.predicted.lower() in ("approve", "approved")


def fairlearn_by_group(
    records: Sequence[DecisionRecord], attributes: Sequence[str]
) -> tuple[pd.Series, pd.DataFrame]:
    """Fairlearn's selection rate over every decision, and its confusion-matrix rates over the
    decisions with a known outcome (docs/bias.md, "Where this departs from Fairlearn")."""
    y_pred = np.array([int(favourable(record)) for record in records])
    y_true = np.array([int(record.actual == "repaid") for record in records])
    groups = pd.Series([group_key(record, attributes) for record in records])
    known = np.array([record.actual != "unknown" for record in records])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = MetricFrame(
            metrics=selection_rate, y_true=y_true, y_pred=y_pred, sensitive_features=groups
        ).by_group
        labelled = pd.DataFrame()
        if known.any():
            labelled = MetricFrame(
                metrics=LABELLED_RATES,
                y_true=y_true[known],
                y_pred=y_pred[known],
                sensitive_features=groups[known],
            ).by_group
    return selection, labelled


def assert_agrees_with_fairlearn(
    groups: list[dict[str, Any]], records: Sequence[DecisionRecord], attributes: Sequence[str]
) -> None:
    selection, labelled = fairlearn_by_group(records, attributes)
    by_key = {group["key"]: group for group in groups}
    assert set(by_key) == set(selection.index)
    for key, group in by_key.items():
        rates = group["rates"]
        assert rates["selection_rate"]["value"] == pytest.approx(selection[key], abs=1e-9)
        for rate in LABELLED_RATES:
            ours = rates[rate]["value"]
            if ours is None:
                # No denominator: null here, 0.0 (or absent) in Fairlearn.
                assert key not in labelled.index or labelled.loc[key, rate] == 0.0
            else:
                assert ours == pytest.approx(labelled.loc[key, rate], abs=1e-9), (key, rate)


def book(seed: int, size: int) -> list[DecisionRecord]:
    """A loan book: approvals and repayments that depend on sex and race, some outcomes not yet
    known, some attributes missing or empty, over three months and two model versions."""
    chance = random.Random(seed)
    records = []
    for _ in range(size):
        sex = chance.choice(["female", "male", "male", "", None])
        race = chance.choice(["white", "white", "black", "asian"])
        attributes: dict[str, Any] = {"sex": sex, "race": race}
        if chance.random() < 0.05:
            del attributes["race"]
        approve = chance.random() < (0.45 if sex == "female" else 0.6) - (race == "black") * 0.1
        actual = chance.choice(["repaid", "repaid", "defaulted", "unknown"])
        records.append(
            DecisionRecord(
                attributes=attributes,
                predicted="approve" if approve else "deny",
                actual=actual,
                model_version=chance.choice(["scorer 1.0", "scorer 2.0"]),
                day=DAY - datetime.timedelta(days=chance.randrange(90)),
                score_bucket=chance.randrange(-1, 20),
            )
        )
    return records


ATTRIBUTE_CHOICES = [["sex"], ["race"], ["sex", "race"], ["race", "sex"]]


@pytest.mark.parametrize("attributes", ATTRIBUTE_CHOICES)
def test_intersections_and_marginals_agree_with_fairlearn_on_a_loan_book(attributes):
    records = book(seed=7, size=3000)
    report = bias_report_recompute(records=records, attributes=attributes)

    assert_agrees_with_fairlearn(report["groups"], records, attributes)
    for name in report["marginals"]:
        assert_agrees_with_fairlearn(report["marginals"][name], records, [name])
    assert report["total"] == 3000


def test_summary_figures_agree_with_fairlearn_where_every_rate_exists():
    records = book(seed=11, size=3000)
    report = bias_report_recompute(records=records, attributes=["sex", "race"])
    y_pred = np.array([int(record.predicted == "approve") for record in records])
    y_true = np.array([int(record.actual == "repaid") for record in records])
    groups = pd.Series([group_key(record, ["sex", "race"]) for record in records])
    known = np.array([record.actual != "unknown" for record in records])
    labelled = (y_true[known], y_pred[known])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = {
            "demographic_parity_difference": demographic_parity_difference(
                y_true, y_pred, sensitive_features=groups
            ),
            "demographic_parity_ratio": demographic_parity_ratio(
                y_true, y_pred, sensitive_features=groups
            ),
            "equalized_odds_difference": equalized_odds_difference(
                *labelled, sensitive_features=groups[known]
            ),
            "equalized_odds_ratio": equalized_odds_ratio(
                *labelled, sensitive_features=groups[known]
            ),
        }
    for name, value in expected.items():
        assert report["summary"][name] == pytest.approx(value, abs=1e-9), name


decisions = st.lists(
    st.tuples(
        st.sampled_from(["female", "male", "", None, "absent"]),
        st.sampled_from(["white", "black"]),
        st.sampled_from(["approve", "deny", "Approved", "unknown"]),
        st.sampled_from(["repaid", "defaulted", "unknown"]),
    ),
    min_size=1,
    max_size=60,
)


def records_of(drawn: list[tuple[Any, str, str, str]]) -> list[DecisionRecord]:
    records = []
    for sex, race, predicted, actual in drawn:
        attributes = {"race": race} if sex == "absent" else {"sex": sex, "race": race}
        records.append(
            DecisionRecord(
                attributes=attributes,
                predicted=predicted,
                actual=actual,
                model_version="scorer 1.0",
                day=DAY,
            )
        )
    return records


@SAMPLED
@given(drawn=decisions, attributes=st.sampled_from(ATTRIBUTE_CHOICES))
def test_every_group_rate_agrees_with_fairlearn_on_random_decisions(drawn, attributes):
    # Asking for an attribute that no decision reports is refused, as by the API.
    assume("sex" not in attributes or any(sex != "absent" for sex, *_ in drawn))
    records = records_of(drawn)
    report = bias_report_recompute(records=records, attributes=attributes)

    assert_agrees_with_fairlearn(report["groups"], records, attributes)
    for name in report["marginals"]:
        assert_agrees_with_fairlearn(report["marginals"][name], records, [name])


# --- The statistics, against scipy and Newcombe ---------------------------------------------------


def test_wilson_interval_matches_newcombes_worked_example():
    # Newcombe (1998), Table I, example (a): 81 of 263, Wilson's score interval 0.2553 to 0.3662.
    low, high = recompute.wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert recompute.wilson_interval(0, 10)[0] == 0.0
    assert recompute.wilson_interval(10, 10)[1] == 1.0
    assert recompute.wilson_interval(0, 0) is None


tables = st.tuples(st.integers(1, 400), st.integers(1, 400)).flatmap(
    lambda sizes: st.tuples(
        st.integers(0, sizes[0]), st.just(sizes[0]), st.integers(0, sizes[1]), st.just(sizes[1])
    )
)


@hypothesis_settings(max_examples=300, deadline=None, derandomize=True)
@given(table=tables)
def test_fishers_exact_test_agrees_with_scipy(table):
    a, n1, b, n2 = table
    cells = ((a, n1 - a), (b, n2 - b))
    assert recompute.fisher_exact_p(cells) == pytest.approx(
        stats.fisher_exact(cells).pvalue, abs=1e-9
    )


@pytest.mark.parametrize("n", [5, 40, 401])
def test_fishers_exact_test_counts_symmetric_tables_that_tie_exactly(n):
    for a in range(n + 1):
        cells = ((a, n - a), (n - a, a))
        assert recompute.fisher_exact_p(cells) == pytest.approx(
            stats.fisher_exact(cells).pvalue, abs=1e-9
        )


@hypothesis_settings(max_examples=200, deadline=None, derandomize=True)
@given(
    a=st.integers(10, 5000),
    extra_a=st.integers(10, 5000),
    b=st.integers(10, 5000),
    extra_b=st.integers(10, 5000),
)
def test_pearsons_chi_square_agrees_with_scipy(a, extra_a, b, extra_b):
    cells = ((a, extra_a), (b, extra_b))
    expected = stats.chi2_contingency(cells, correction=False)[1]
    assert recompute.chi_square_p(cells) == pytest.approx(expected, abs=1e-12)


def test_large_groups_are_tested_with_chi_square_and_small_ones_with_fisher():
    assert recompute.proportions_test(300, 600, 250, 600)[1] == "chi2"
    assert recompute.proportions_test(30, 60, 25, 60)[1] == "fisher"
    # 2,000 decisions but an expected count of 2 favourable decisions: Fisher.
    assert recompute.proportions_test(1, 1000, 3, 1000)[1] == "fisher"


# --- report_compare ------------------------------------------------------------------------------


def test_report_compare_names_a_changed_count_and_a_changed_rate():
    report = bias_report_recompute(records=book(seed=3, size=400), attributes=["sex", "race"])
    changed = copy.deepcopy(report)
    women = next(group for group in changed["groups"] if group["key"] == "female|black")
    women["count"] += 1
    women["rates"]["tpr"]["low"] += 1e-6
    men = next(group for group in changed["marginals"]["sex"] if group["key"] == "male")
    men["rates"]["selection_rate"]["value"] += 1e-12  # float noise: not a difference

    found = report_compare(report, changed)

    assert [(item.path, item.ours, item.theirs) for item in found] == [
        ("groups[female|black].count", women["count"] - 1, women["count"]),
        (
            "groups[female|black].rates.tpr.low",
            women["rates"]["tpr"]["low"] - 1e-6,
            women["rates"]["tpr"]["low"],
        ),
    ]
    assert report_compare(report, json.loads(json.dumps(report))) == []


def test_report_compare_is_strict_on_counts_labels_and_missing_groups():
    report = bias_report_recompute(records=book(seed=3, size=400), attributes=["sex"])
    changed = copy.deepcopy(report)
    changed["total"] = changed["total"] + 1e-12  # a count is exact: no tolerance
    changed["reference"]["group"] = "female"
    dropped = changed["groups"].pop()

    paths = [item.path for item in report_compare(report, changed)]

    assert paths == ["total", "reference.group", f"groups[{dropped['key']}]"]


# --- The module stands alone ----------------------------------------------------------------------


def test_the_recomputation_imports_only_the_standard_library():
    tree = ast.parse(open(recompute.__file__, encoding="utf-8").read())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported
    assert not imported & {"django", "bias", "scipy", "numpy", "veridict", "audit"}


# --- Against the server's own report, on decisions recorded through the services -----------------

VERSIONS = ("4.2.0", "5.0.0")
MIN_CELL = 4


def recorded_decisions(system: Any, count: int = 160) -> dict[int, Any]:
    """Decisions over three months and two model versions, with outcomes (some corrected by a
    later one), final reviews and a correction, recorded as the API records them. Answers the
    final output of each reviewed decision, by decision id (what its closing review opens)."""
    chance = random.Random(5)
    finals: dict[int, Any] = {}
    made = []
    for number in range(count):
        attributes: dict[str, Any] = {
            "sex": chance.choice(["female", "male", "male"]),
            "race": chance.choice(["white", "white", "black"]),
        }
        if chance.random() < 0.12:
            del attributes["sex"]
        if chance.random() < 0.05:
            attributes["age_band"] = "30-39"
        score = round(chance.random(), 3)
        output = chance.choice(
            [
                {"label": chance.choice(["approve", "deny", "Approved"]), "score": score},
                {"score": score},  # labelled against the threshold
                {"value": chance.choice([1, 0, "approve"])},
            ]
        )
        moment = datetime.datetime(
            2026,
            chance.choice([9, 10, 11]),
            chance.randint(1, 28),
            chance.randint(0, 23),
            tzinfo=datetime.UTC,
        )
        request = decision_request_make(
            client_decision_id=f"d{number}",
            subject_ref=f"s{number}",
            model={"name": "loan-scorer", "version": chance.choice(VERSIONS)},
            occurred_at=moment.isoformat(),
            output=output,
            protected_attributes=attributes,
        )
        decision = record_through_services(system, request)
        made.append(decision)
        for _ in range(chance.choice([0, 1, 1, 2])):
            outcome_record(
                decision=decision,
                actual={"label": chance.choice(["repaid", "defaulted", "Repaid"])},
                observed_at=moment + datetime.timedelta(days=30),
            )
        if chance.random() < 0.2:
            final = {"label": chance.choice(["approve", "deny"])}
            counts_final_set(decision=decision, final_output=final)
            finals[decision.pk] = final
    # A correction: the corrected decision stops counting, the correction counts.
    corrected = made[40]
    record_through_services(
        system,
        decision_request_make(
            client_decision_id="d40-corrected",
            subject_ref="s40",
            supersedes=str(corrected.entry.uuid),
            model={"name": "loan-scorer", "version": corrected.model_version.version},
            occurred_at=corrected.occurred_at.isoformat(),
            output={"label": "approve", "score": 0.9},
            protected_attributes={"sex": "female", "race": "black"},
        ),
    )
    return finals


def decision_request_make(**fields: Any) -> dict[str, Any]:
    """A decision request as an AI system sends it (tests/audit/conftest.py's, varied)."""
    return {
        "inputs": {"income": 42000, "amount": 15000},
        "threshold": 0.5,
        "solely_automated": False,
        "owner": "officer-17",
        **fields,
    }


def record_through_services(system: Any, request: dict[str, Any]) -> Any:
    from audit.serializers import DecisionSerializer
    from audit.services.decisions import decision_record

    serializer = DecisionSerializer(data=request)
    serializer.is_valid(raise_exception=True)
    decision, created = decision_record(system=system, data=serializer.validated_data)
    assert created
    return decision


def records_opened(system: Any, finals: dict[int, Any]) -> list[DecisionRecord]:
    """What an auditor opens: each counted decision's leaf body, the opening of its protected
    attributes, its latest outcome leaf and its closing review's output."""
    from audit.models import Decision, Outcome
    from audit.services.subjects import decision_personal_data

    records = []
    decisions = Decision.objects.filter(system=system).select_related("entry", "subject")
    for decision in decisions:
        if Decision.objects.filter(supersedes=decision).exists():
            continue
        leaf = json.loads(bytes(decision.entry.canonical))
        opened = decision_personal_data(decision)
        assert opened is not None
        latest = (
            Outcome.objects.filter(decision=decision).select_related("entry").order_by("-entry")
        ).first()
        records.append(
            recompute.record_from_leaves(
                decision=leaf["body"],
                protected_attributes=opened["fields"].get("protected_attributes"),
                actual=json.loads(bytes(latest.entry.canonical))["body"]["actual"]
                if latest
                else None,
                final_output=finals.get(decision.pk),
            )
        )
    return records


def differences(
    system: Any,
    records: Sequence[DecisionRecord],
    *,
    version: str | None = None,
    prefix: str = "loan-scorer",
    **query: Any,
) -> list[Any]:
    """report_compare of the recomputed report and the server's, as the API serialises it; or,
    when the server refuses the query, the field both name."""
    from django.conf import settings as django_settings

    from audit.models import ModelVersion
    from bias.selectors import ReportError, bias_report_build

    model_version = (
        ModelVersion.objects.get(system=system, version=version) if version is not None else None
    )

    def recomputed() -> dict[str, Any]:
        return bias_report_recompute(
            records=records,
            model_version=f"{prefix} {version}" if version else None,
            min_cell=django_settings.BIAS_MIN_CELL,
            favourable_labels=served["favourable_labels"] if served else (),
            favourable_actual_labels=served["favourable_actual_labels"] if served else (),
            system=system.slug,
            system_name=system.name,
            **query,
        )

    served = None
    try:
        served = json.loads(
            json.dumps(bias_report_build(system=system, model_version=model_version, **query))
        )
    except ReportError as refused:
        with pytest.raises(recompute.RecomputeError) as also:
            recomputed()
        return [f"both refuse {refused.field}"] if also.value.field == refused.field else [also]
    ours = recomputed()
    assert ours["total"] > 0
    return report_compare(ours, served)


OCTOBER = (datetime.date(2026, 10, 1), datetime.date(2026, 10, 31))
QUERIES = [
    {"attributes": ["sex"]},
    {"attributes": ["race"], "reference": "most_favoured"},
    {"attributes": ["sex", "race"]},
    {"attributes": ["race", "sex"], "reference": "most_favoured", "outcome": "final"},
    {"attributes": ["sex", "race"], "reference": "female|black"},
    {"attributes": ["sex", "race"], "reference": "unknown|white", "outcome": "final"},
    {"attributes": ["sex", "age_band"]},
    {"attributes": ["sex", "race"], "version": "5.0.0"},
    {"attributes": ["sex"], "date_from": OCTOBER[0], "date_to": OCTOBER[1]},
]


@pytest.mark.django_db
def test_the_recomputed_full_report_equals_the_servers():
    ai_system = AISystemFactory()
    records = records_opened(ai_system, recorded_decisions(ai_system))

    for query in [
        *QUERIES,
        {"attributes": ["sex", "race"], "date_from": datetime.date(2026, 10, 3)},
        {"attributes": ["race"], "date_to": datetime.date(2026, 10, 17), "version": "4.2.0"},
    ]:
        assert differences(ai_system, records, **query) == [], query


@pytest.mark.django_db
def test_the_recomputed_public_report_equals_the_servers(settings):
    ai_system = AISystemFactory()
    settings.BIAS_MIN_CELL = MIN_CELL
    records = records_opened(ai_system, recorded_decisions(ai_system))
    kept = recompute.public_records(records, min_cell=MIN_CELL)
    assert 0 < len(kept) < len(records)  # some cells are dropped, some kept
    assert any(record.attributes.get("sex") is None for record in kept)  # an unknown group

    for query in QUERIES:
        answer = differences(ai_system, records, public=True, **query)
        if query["attributes"] == ["sex", "age_band"]:
            # Only dropped cells report an age band: its name is not public either.
            assert answer == ["both refuse attributes"]
        else:
            assert answer == [], query


@pytest.mark.django_db
def test_the_recomputed_report_follows_the_systems_favourable_labels():
    ai_system = AISystemFactory()
    from bias.models import OutcomeMapping

    OutcomeMapping.objects.create(
        system=ai_system, favourable_labels=["DENY"], favourable_actual_labels=["defaulted"]
    )
    records = records_opened(ai_system, recorded_decisions(ai_system, 60))

    assert differences(ai_system, records, attributes=["sex", "race"]) == []


def test_a_category_of_exactly_two_percent_counts_in_ll144_and_one_under_is_left_out():
    records = [
        DecisionRecord(attributes={"race": race}, predicted=label, model_version="m 1", day=DAY)
        for race, label, count in [
            ("white", "approve", 40),
            ("black", "deny", 9),
            ("asian", "deny", 1),
        ]
        for _ in range(count)
    ]
    groups = {
        g["key"]: g for g in bias_report_recompute(records=records, attributes=["race"])["groups"]
    }
    assert groups["asian"]["ll144_excluded"] is False  # 1 of 50: exactly 2 %
    assert groups["asian"]["impact_ratio"] == 0.0 and groups["asian"]["four_fifths"] is True

    fewer = bias_report_recompute(records=[*records, records[0]], attributes=["race"])
    asian = next(group for group in fewer["groups"] if group["key"] == "asian")
    assert asian["ll144_excluded"] is True and asian["impact_ratio"] is None  # 1 of 51


def test_the_median_bucket_is_the_first_at_which_half_the_scores_are_reached():
    assert recompute.median_bucket({7: 2, 3: 2}) == 3
    assert recompute.median_bucket({3: 1, 7: 2}) == 7
    assert recompute.median_bucket({}) is None


@pytest.mark.parametrize(
    ("output", "threshold", "label"),
    [
        ({"label": " approve ", "value": "x", "score": 0.1}, 0.5, "approve"),
        ({"value": 1}, None, "1"),
        ({"value": 0.25}, None, "0.25"),
        ({"value": "Approved"}, None, "Approved"),
        ({"score": 0.5}, 0.5, "score>=threshold"),
        ({"score": 0.49}, 0.5, "score<threshold"),
        ({"score": 0.9}, None, "unknown"),
        ({"label": "   "}, None, "unknown"),
        ({"label": "x" * 150}, None, "x" * 100),
        (None, 0.5, "unknown"),
    ],
)
def test_labels_come_from_label_then_value_then_score_against_threshold(output, threshold, label):
    assert recompute.label_from_output(output, threshold) == label


@pytest.mark.parametrize(
    ("score", "bucket"),
    [
        (0.0, 0),
        (0.05, 1),
        (0.999, 19),
        (1.0, 19),
        (1.7, 19),
        (-0.2, 0),
        (float("nan"), -1),
        (True, -1),
    ],
)
def test_scores_fall_in_twentieths_clamped_to_zero_and_one(score, bucket):
    assert recompute.score_bucket_from_output({"score": score}) == bucket


def test_a_record_from_leaves_takes_its_day_in_utc_and_its_final_label_with_the_threshold():
    record = recompute.record_from_leaves(
        decision={
            "output": {"score": 0.7},
            "threshold": 0.5,
            "occurred_at": "2026-11-26T23:59:59.999999Z",
            "model": {"name": "scorer", "version": "4.2"},
        },
        protected_attributes={"sex": "female"},
        actual={"value": "repaid"},
        final_output={"score": 0.2},
    )
    assert record == DecisionRecord(
        attributes={"sex": "female"},
        predicted="score>=threshold",
        model_version="scorer 4.2",
        day=datetime.date(2026, 11, 26),
        actual="repaid",
        final="score<threshold",
        score_bucket=14,
    )


def counts_put(system: Any, records: Sequence[DecisionRecord]) -> None:
    """The server's counts table filled with these decisions, as its services would count them
    (tests/bias/test_report.py fills it the same way): quicker than recording thousands."""
    from collections import Counter

    from audit.services.decisions import model_version_register
    from bias.models import AttributeSet, OutcomeCount
    from bias.services import _digest, attributes_normalise

    rows: Counter[tuple[Any, ...]] = Counter()
    for record in records:
        rows[
            (
                record.model_version,
                record.day,
                json.dumps(attributes_normalise(dict(record.attributes or {}))),
                record.predicted,
                record.actual,
                record.final if record.final is not None else record.predicted,
                record.final is not None,
                record.score_bucket,
            )
        ] += 1
    versions: dict[str, Any] = {}
    sets: dict[str, Any] = {}
    counts = []
    for (version, day, attributes, *labels, bucket), count in rows.items():
        if version not in versions:
            versions[version] = model_version_register(
                system=system, name=version.split()[0], version=version.split()[1]
            )[0]
        if attributes not in sets:
            normal = json.loads(attributes)
            sets[attributes] = AttributeSet.objects.create(
                system=system, attributes=normal, digest=_digest(normal)
            )
        predicted, actual, final, reviewed = labels
        counts.append(
            OutcomeCount(
                system=system,
                model_version=versions[version],
                day=day,
                attribute_set=sets[attributes],
                predicted=predicted,
                actual=actual,
                final=final,
                reviewed=reviewed,
                score_bucket=bucket,
                count=count,
            )
        )
    OutcomeCount.objects.bulk_create(counts)


@pytest.mark.django_db
def test_the_recomputed_report_equals_the_servers_over_a_large_loan_book(settings):
    settings.BIAS_MIN_CELL = 25
    system = AISystemFactory()
    chance = random.Random(2)
    records = [
        # A quarter of them reviewed, some to the other label.
        record
        if chance.random() < 0.75
        else dataclasses.replace(record, final=chance.choice(["approve", "deny"]))
        for record in book(seed=13, size=4000)
    ]
    counts_put(system, records)
    tests_used = set()

    for query in [
        {"attributes": ["sex", "race"]},
        {"attributes": ["race", "sex"], "reference": "most_favoured", "outcome": "final"},
        {"attributes": ["sex"], "public": True},
        {"attributes": ["sex", "race"], "public": True, "reference": "female|black"},
    ]:
        assert differences(system, records, prefix="scorer", **query) == [], query
        ours = bias_report_recompute(records=records, min_cell=25, **query)
        tests_used |= {
            versus["test"] for group in ours["groups"] for versus in group["vs_reference"].values()
        }
    assert {"chi2", "fisher"} <= tests_used  # figures of both tests were compared


def test_report_compare_takes_a_rate_written_as_an_integer_by_canonical_json():
    """RFC 8785 writes 1.0 as 1, and a p-value of 0.9999999999999999 is 1 within the tolerance."""
    report = bias_report_recompute(records=book(seed=3, size=400), attributes=["sex"])
    theirs = copy.deepcopy(report)
    theirs["groups"][0]["rates"]["selection_rate"]["high"] = 1
    ours = copy.deepcopy(report)
    ours["groups"][0]["rates"]["selection_rate"]["high"] = 0.9999999999999999
    assert report_compare(ours, theirs) == []
    theirs["groups"][0]["rates"]["selection_rate"]["high"] = 0
    assert [item.path for item in report_compare(ours, theirs)] == [
        f"groups[{report['groups'][0]['key']}].rates.selection_rate.high"
    ]
