"""bias_report_build, bias_trends and override_rates_by_group over the counts table."""

from __future__ import annotations

import datetime
import warnings
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
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from audit.models import AISystem, ModelVersion
from audit.services.decisions import model_version_register
from bias.models import NO_SCORE, UNKNOWN, AttributeSet, OutcomeCount, OutcomeMapping
from bias.selectors import (
    ReportError,
    bias_access,
    bias_attributes,
    bias_report_build,
    bias_trends,
    override_rates_by_group,
)
from bias.services import _digest, attributes_normalise

pytestmark = pytest.mark.django_db

DAY = datetime.date(2026, 3, 2)  # a Monday


def version(system: AISystem, number: str = "1.0") -> ModelVersion:
    return model_version_register(system=system, name="scorer", version=number)[0]


def put(
    system: AISystem,
    model_version: ModelVersion,
    attributes: dict[str, str],
    predicted: str,
    *,
    actual: str = UNKNOWN,
    final: str | None = None,
    reviewed: bool = False,
    bucket: int = NO_SCORE,
    count: int = 1,
    day: datetime.date = DAY,
) -> None:
    """Adds `count` decisions to the counts table directly, as the services would."""
    normal = attributes_normalise(attributes)
    attribute_set, _ = AttributeSet.objects.get_or_create(
        system=system, digest=_digest(normal), defaults={"attributes": normal}
    )
    row, _ = OutcomeCount.objects.get_or_create(
        system=system,
        model_version=model_version,
        day=day,
        attribute_set=attribute_set,
        predicted=predicted,
        actual=actual,
        final=final if final is not None else predicted,
        reviewed=reviewed,
        score_bucket=bucket,
    )
    row.count += count
    row.save()


# (sex, race, predicted, actual, count): a loan book with a disparity against women.
BOOK = [
    ("male", "white", "approve", "repaid", 40),
    ("male", "white", "approve", "defaulted", 10),
    ("male", "white", "deny", "repaid", 5),
    ("male", "white", "deny", "defaulted", 15),
    ("male", "black", "approve", "repaid", 12),
    ("male", "black", "deny", "defaulted", 9),
    ("male", "black", "deny", UNKNOWN, 4),
    ("female", "white", "approve", "repaid", 20),
    ("female", "white", "deny", "repaid", 12),
    ("female", "white", "deny", "defaulted", 18),
    ("female", "black", "approve", "defaulted", 3),
    ("female", "black", "deny", "repaid", 6),
    ("female", "black", "deny", "defaulted", 11),
    ("female", "black", "approve", UNKNOWN, 2),
]


@pytest.fixture
def book(ai_system) -> ModelVersion:
    model_version = version(ai_system)
    for sex, race, predicted, actual, count in BOOK:
        put(
            ai_system,
            model_version,
            {"sex": sex, "race": race},
            predicted,
            actual=actual,
            count=count,
        )
    return model_version


def book_rows(attributes: list[str]) -> dict[str, Any]:
    positions = {"sex": 0, "race": 1}
    y_true, y_pred, group, labelled = [], [], [], []
    for entry in BOOK:
        key = "|".join(entry[positions[name]] for name in attributes)
        for _ in range(entry[4]):
            y_pred.append(int(entry[2] == "approve"))
            y_true.append(int(entry[3] == "repaid"))
            labelled.append(entry[3] != UNKNOWN)
            group.append(key)
    return {
        "y_true": np.array(y_true),
        "y_pred": np.array(y_pred),
        "group": pd.Series(group),
        "labelled": np.array(labelled),
    }


def by_key(groups: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {group["key"]: group for group in groups}


@pytest.mark.parametrize("attributes", [["sex"], ["race"], ["sex", "race"]])
def test_the_report_agrees_with_fairlearn_on_the_same_decisions(ai_system, book, attributes):
    report = bias_report_build(system=ai_system, attributes=attributes)
    rows = book_rows(attributes)
    mask = rows["labelled"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        selection = MetricFrame(
            metrics=selection_rate,
            y_true=rows["y_true"],
            y_pred=rows["y_pred"],
            sensitive_features=rows["group"],
        ).by_group
        labelled = MetricFrame(
            metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
            y_true=rows["y_true"][mask],
            y_pred=rows["y_pred"][mask],
            sensitive_features=rows["group"][mask],
        ).by_group
        arguments = (rows["y_true"][mask], rows["y_pred"][mask])
        features = {"sensitive_features": rows["group"][mask]}
        expected_summary = {
            "demographic_parity_difference": demographic_parity_difference(
                rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
            ),
            "demographic_parity_ratio": demographic_parity_ratio(
                rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
            ),
            "equalized_odds_difference": equalized_odds_difference(*arguments, **features),
            "equalized_odds_ratio": equalized_odds_ratio(*arguments, **features),
        }

    groups = by_key(report["groups"])
    assert set(groups) == set(selection.index)
    for key, group in groups.items():
        rates = group["rates"]
        assert rates["selection_rate"]["value"] == pytest.approx(selection[key], abs=1e-9)
        assert rates["tpr"]["value"] == pytest.approx(labelled.loc[key, "tpr"], abs=1e-9)
        assert rates["fpr"]["value"] == pytest.approx(labelled.loc[key, "fpr"], abs=1e-9)
    for name, expected in expected_summary.items():
        assert report["summary"][name] == pytest.approx(expected, abs=1e-9), name
    assert report["total"] == sum(entry[4] for entry in BOOK)
    assert report["labelled"] == report["total"] - 6


def test_marginals_are_the_sums_of_the_intersections(ai_system, book):
    report = bias_report_build(system=ai_system, attributes=["sex", "race"])
    intersections = by_key(report["groups"])
    women = by_key(report["marginals"]["sex"])["female"]
    assert (
        women["count"]
        == intersections["female|white"]["count"] + intersections["female|black"]["count"]
    )
    assert women["selected"] == 25 and women["count"] == 72
    assert set(report["marginals"]) == {"sex", "race"}
    assert by_key(report["marginals"]["race"])["black"]["values"] == {"race": "black"}
    assert intersections["male|black"]["values"] == {"sex": "male", "race": "black"}


def test_women_are_flagged_below_four_fifths_with_a_significance_test(ai_system, book):
    report = bias_report_build(system=ai_system, attributes=["sex"])
    women = by_key(report["groups"])["female"]
    men = by_key(report["groups"])["male"]
    assert report["reference"] == {"mode": "largest", "group": "male"}
    assert men["rates"]["selection_rate"]["value"] == pytest.approx(62 / 95)
    assert women["impact_ratio"] == pytest.approx((25 / 72) / (62 / 95))
    assert women["four_fifths"] is True
    versus = women["vs_reference"]["selection_rate"]
    assert versus["test"] == "fisher" and versus["p_value"] < 0.001
    low, high = women["rates"]["selection_rate"]["low"], women["rates"]["selection_rate"]["high"]
    assert low < 25 / 72 < high
    assert report["summary"]["four_fifths_violations"] == ["female"]


def test_a_missing_attribute_is_the_group_unknown_and_is_counted_apart(ai_system, book):
    put(ai_system, book, {"sex": "female"}, "deny", count=4)  # no race reported
    report = bias_report_build(system=ai_system, attributes=["race"])
    unknown = by_key(report["groups"])[UNKNOWN]
    assert unknown["unknown"] and unknown["ll144_excluded"] and unknown["count"] == 4
    assert report["summary"]["unknown_count"] == 4


def test_public_reports_drop_cells_under_the_minimum(ai_system, book, settings):
    settings.BIAS_MIN_CELL = 26
    report = bias_report_build(system=ai_system, attributes=["sex", "race"], public=True)
    groups = by_key(report["groups"])
    # male|black (25) and the group under 26 are dropped cells: not listed, counted nowhere.
    assert "male|black" not in groups
    assert not groups["female|white"]["suppressed"]
    assert report["total"] == sum(group["count"] for group in report["groups"])
    assert report["summary"]["suppressed_groups"] == 0
    assert report["min_cell"] == 26
    staff = bias_report_build(system=ai_system, attributes=["sex", "race"])
    assert by_key(staff["groups"])["male|black"]["count"] == 25
    assert staff["total"] == report["total"] + 25 + sum(
        group["count"]
        for group in staff["groups"]
        if group["key"] not in groups and group["key"] != "male|black"
    )


def test_a_public_cell_is_a_set_in_one_model_version_and_one_month(ai_system, settings):
    settings.BIAS_MIN_CELL = 10
    first, second = version(ai_system), version(ai_system, "2.0")
    women = {"sex": "female"}
    put(ai_system, first, women, "approve", count=6, day=datetime.date(2026, 3, 2))
    put(ai_system, first, women, "deny", count=6, day=datetime.date(2026, 3, 30))
    put(ai_system, second, women, "approve", count=9, day=datetime.date(2026, 3, 2))
    put(ai_system, first, women, "deny", count=9, day=datetime.date(2026, 4, 1))
    report = bias_report_build(system=ai_system, attributes=["sex"], public=True)
    # 12 of 1.0 in March are kept; 9 of 2.0 in March and 9 of 1.0 in April are dropped.
    assert report["total"] == 12 and by_key(report["groups"])["female"]["selected"] == 6
    assert (report["first_day"], report["last_day"]) == ("2026-03-01", "2026-03-31")
    points = bias_trends(system=ai_system, attributes=["sex"], period="month", public=True)
    assert [(point["model_version"], point["total"]) for point in points] == [("scorer 1.0", 12)]
    with pytest.raises(ReportError, match="public trends are by month"):
        bias_trends(system=ai_system, attributes=["sex"], public=True)
    for window, field in (
        ({"date_from": datetime.date(2026, 3, 2)}, "from"),
        ({"date_to": datetime.date(2026, 3, 30)}, "to"),
    ):
        with pytest.raises(ReportError, match="whole calendar months") as refused:
            bias_report_build(system=ai_system, attributes=["sex"], public=True, **window)
        assert refused.value.field == field
    staff = bias_report_build(
        system=ai_system, attributes=["sex"], date_from=datetime.date(2026, 3, 2)
    )
    assert staff["total"] == 6 + 6 + 9 + 9


def test_filters_select_the_model_version_and_the_days(ai_system, book):
    later = version(ai_system, "2.0")
    put(
        ai_system,
        later,
        {"sex": "female", "race": "white"},
        "approve",
        count=7,
        day=DAY + datetime.timedelta(days=10),
    )

    only_later = bias_report_build(system=ai_system, attributes=["sex"], model_version=later)
    assert only_later["total"] == 7 and only_later["model_version"] == "scorer 2.0"
    window = bias_report_build(
        system=ai_system,
        attributes=["sex"],
        date_from=DAY + datetime.timedelta(days=1),
        date_to=DAY + datetime.timedelta(days=30),
    )
    assert window["total"] == 7
    assert window["first_day"] == window["last_day"] == "2026-03-12"
    everything = bias_report_build(system=ai_system, attributes=["sex"])
    assert everything["total"] == 167 + 7


def test_the_final_outcome_report_uses_the_reviewed_labels(ai_system):
    model_version = version(ai_system)
    put(
        ai_system, model_version, {"sex": "female"}, "deny", final="approve", reviewed=True, count=6
    )
    put(ai_system, model_version, {"sex": "female"}, "deny", count=4)
    put(ai_system, model_version, {"sex": "male"}, "approve", count=10)

    ai = bias_report_build(system=ai_system, attributes=["sex"], outcome="ai")
    final = bias_report_build(system=ai_system, attributes=["sex"], outcome="final")
    assert by_key(ai["groups"])["female"]["rates"]["selection_rate"]["value"] == 0.0
    assert by_key(final["groups"])["female"]["rates"]["selection_rate"]["value"] == 0.6
    assert final["outcome"] == "final"


def test_a_systems_own_favourable_labels_are_used(ai_system):
    model_version = version(ai_system)
    put(ai_system, model_version, {"sex": "female"}, "A", actual="paid", count=3)
    put(ai_system, model_version, {"sex": "female"}, "C", actual="late", count=1)
    OutcomeMapping.objects.create(
        system=ai_system, favourable_labels=["a", "B"], favourable_actual_labels=["paid"]
    )
    group = bias_report_build(system=ai_system, attributes=["sex"])["groups"][0]
    assert group["selected"] == 3 and group["tp"] == 3 and group["tn"] == 1


def test_scoring_rates_count_scores_above_the_whole_samples_median_bucket(ai_system):
    model_version = version(ai_system)
    put(ai_system, model_version, {"sex": "male"}, "approve", bucket=15, count=6)
    put(ai_system, model_version, {"sex": "male"}, "deny", bucket=8, count=4)
    put(ai_system, model_version, {"sex": "female"}, "deny", bucket=8, count=5)
    put(ai_system, model_version, {"sex": "female"}, "approve", bucket=12, count=5)
    # Sorted scores: 9 in bucket 8, then 5 in 12, 6 in 15: the 10th of 20 is in bucket 12.
    report = bias_report_build(system=ai_system, attributes=["sex"])
    groups = by_key(report["groups"])
    assert report["median_score_bucket"] == {"index": 12, "low": 0.6, "high": 0.65}
    assert groups["male"]["scored_above_median"] == 6
    assert groups["female"]["scored_above_median"] == 0
    assert groups["male"]["rates"]["scoring_rate"]["value"] == 0.6
    assert groups["male"]["scoring_impact_ratio"] == 1.0
    assert groups["female"]["scoring_impact_ratio"] == 0.0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"attributes": ["religion"]}, "attributes"),
        ({"attributes": []}, "attributes"),
        ({"attributes": ["sex", "sex"]}, "attributes"),
        ({"reference": "martian"}, "reference"),
        ({"reference": "female|white"}, "reference"),
        ({"outcome": "human"}, "outcome"),
        ({"date_from": datetime.date(2026, 5, 1), "date_to": DAY}, "from"),
    ],
)
def test_bad_parameters_are_refused_naming_the_parameter(ai_system, book, changes, field):
    arguments = {"system": ai_system, "attributes": ["sex"], **changes}
    with pytest.raises(ReportError) as raised:
        bias_report_build(**arguments)
    assert raised.value.field == field


def test_a_named_reference_and_the_most_favoured_are_honoured(ai_system, book):
    named = bias_report_build(
        system=ai_system, attributes=["sex", "race"], reference="female|black"
    )
    assert named["reference"] == {"mode": "named", "group": "female|black"}
    assert (
        by_key(named["marginals"]["sex"])["female"]["vs_reference"]["selection_rate"]["difference"]
        == 0.0
    )
    favoured = bias_report_build(system=ai_system, attributes=["race"], reference="most_favoured")
    assert favoured["reference"]["group"] == "white"


def test_the_report_costs_a_fixed_number_of_queries(ai_system, book, django_assert_max_num_queries):
    for day in range(30):
        put(
            ai_system,
            book,
            {"sex": "male", "race": "white"},
            "approve",
            day=DAY + datetime.timedelta(days=day),
        )
    with django_assert_max_num_queries(8):
        bias_report_build(system=ai_system, attributes=["sex", "race"])


def test_trends_show_each_model_version_per_week(ai_system):
    first, second = version(ai_system, "1.0"), version(ai_system, "2.0")
    for week in range(3):
        day = DAY + datetime.timedelta(weeks=week, days=week)
        put(ai_system, first, {"sex": "female"}, "approve", count=2, day=day)
        put(ai_system, first, {"sex": "female"}, "deny", count=8, day=day)
        put(ai_system, first, {"sex": "male"}, "approve", count=5, day=day)
        put(ai_system, first, {"sex": "male"}, "deny", count=5, day=day)
    put(ai_system, second, {"sex": "female"}, "approve", count=5, day=DAY + datetime.timedelta(14))
    put(ai_system, second, {"sex": "male"}, "approve", count=5, day=DAY + datetime.timedelta(15))

    points = bias_trends(system=ai_system, attributes=["sex"], period="week")
    assert [(point["model_version"], point["period_start"]) for point in points] == [
        ("scorer 1.0", "2026-03-02"),
        ("scorer 1.0", "2026-03-09"),
        ("scorer 1.0", "2026-03-16"),
        ("scorer 2.0", "2026-03-16"),
    ]
    assert points[0]["groups"]["female"]["impact_ratio"] == pytest.approx(0.4)
    assert points[-1]["groups"]["female"]["impact_ratio"] == 1.0
    months = bias_trends(system=ai_system, attributes=["sex"], period="month")
    assert [(p["model_version"], p["period_start"], p["total"]) for p in months] == [
        ("scorer 1.0", "2026-03-01", 60),
        ("scorer 2.0", "2026-03-01", 10),
    ]
    with pytest.raises(ReportError):
        bias_trends(system=ai_system, attributes=["sex"], period="day")


def test_override_rates_by_group_count_reviews_that_changed_the_label(ai_system):
    model_version = version(ai_system)
    put(
        ai_system, model_version, {"sex": "female"}, "deny", final="approve", reviewed=True, count=3
    )
    put(ai_system, model_version, {"sex": "female"}, "deny", reviewed=True, count=7)
    put(ai_system, model_version, {"sex": "female"}, "deny", count=50)  # not reviewed
    put(ai_system, model_version, {"sex": "male"}, "approve", reviewed=True, count=4)

    rates = by_key(override_rates_by_group(system=ai_system, attributes=["sex"]))
    assert (rates["female"]["reviewed"], rates["female"]["overridden"]) == (10, 3)
    assert rates["female"]["rate"] == 0.3
    assert rates["female"]["low"] < 0.3 < rates["female"]["high"]
    assert rates["male"]["rate"] == 0.0


def test_access_is_full_for_the_systems_key_and_permitted_staff_else_public_or_none(
    ai_system, django_user_model
):
    from django.contrib.auth.models import Permission

    from audit.models import SystemAPIKey

    key, _ = SystemAPIKey.objects.create_key(name="k", system=ai_system)
    staff = django_user_model.objects.create_user("auditor", is_staff=True)
    plain = django_user_model.objects.create_user("plain", is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_outcomecount"))
    staff = django_user_model.objects.get(pk=staff.pk)

    assert bias_access(user=None, system=ai_system, api_key=key) == "full"
    assert bias_access(user=staff, system=ai_system) == "full"
    assert bias_access(user=plain, system=ai_system) is None
    ai_system.is_public = True
    assert bias_access(user=plain, system=ai_system) == "public"


def test_attribute_names_are_listed_from_the_counts(ai_system, book):
    assert bias_attributes(system=ai_system) == ["race", "sex"]
