"""bias.metrics against Fairlearn 0.15, scipy and published Wilson intervals."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equal_opportunity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
    false_negative_rate,
    false_positive_rate,
    selection_rate,
    true_negative_rate,
    true_positive_rate,
)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import accuracy_score, precision_score

from bias.metrics import (
    Cell,
    disparity_test,
    groups_evaluate,
    median_bucket,
    summary_metrics,
    wilson,
)

TOLERANCE = 1e-9
FAIRLEARN_RATES = {
    "tpr": true_positive_rate,
    "fpr": false_positive_rate,
    "fnr": false_negative_rate,
    "tnr": true_negative_rate,
}


def expand(cells: dict[str, Cell]) -> dict[str, np.ndarray]:
    """The rows the counts stand for: y_pred and group for every decision; y_true for the
    labelled ones (`labelled` selects them)."""
    y_true, y_pred, group, labelled = [], [], [], []
    for key, cell in cells.items():
        parts = [
            (1, 1, True, cell.tp),
            (0, 1, True, cell.fp),
            (1, 0, True, cell.fn),
            (0, 0, True, cell.tn),
            (0, 1, False, cell.selected - cell.tp - cell.fp),
            (0, 0, False, cell.n - cell.selected - cell.fn - cell.tn),
        ]
        for truth, prediction, known, count in parts:
            y_true += [truth] * count
            y_pred += [prediction] * count
            group += [key] * count
            labelled += [known] * count
    return {
        "y_true": np.array(y_true),
        "y_pred": np.array(y_pred),
        "group": np.array(group),
        "labelled": np.array(labelled, dtype=bool),
    }


@st.composite
def cell_tables(draw: Any) -> dict[str, Cell]:
    """2 to 4 groups, each with at least one decision, some labelled, some not."""
    cells = {}
    for key in ("a", "b", "c", "d")[: draw(st.integers(2, 4))]:
        tp, fp, fn, tn = (draw(st.integers(0, 12)) for _ in range(4))
        extra_selected = draw(st.integers(0, 8))
        extra_other = draw(st.integers(0 if tp + fp + fn + tn + extra_selected else 1, 8))
        n = tp + fp + fn + tn + extra_selected + extra_other
        cells[key] = Cell(n=n, selected=tp + fp + extra_selected, tp=tp, fp=fp, fn=fn, tn=tn)
    return cells


def close(ours: float | None, theirs: float) -> bool:
    if ours is None:
        return False
    return math.isclose(ours, float(theirs), rel_tol=0, abs_tol=TOLERANCE)


def fairlearn_frame(rows: dict[str, np.ndarray], metrics: dict[str, Any]) -> MetricFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return MetricFrame(
            metrics=metrics,
            y_true=rows["y_true"],
            y_pred=rows["y_pred"],
            # A Series: Fairlearn 0.15 refuses a one-element ndarray of features.
            sensitive_features=pd.Series(rows["group"]),
        )


def labelled_rows(rows: dict[str, np.ndarray], keep: set[str] | None = None) -> dict[str, Any]:
    mask = rows["labelled"]
    if keep is not None:
        mask = mask & np.isin(rows["group"], sorted(keep))
    return {name: values[mask] for name, values in rows.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell_tables())
def test_group_rates_agree_with_fairlearn_and_a_missing_denominator_is_none_not_zero(cells):
    rows = expand(cells)
    selection = fairlearn_frame(rows, {"selection_rate": selection_rate}).by_group
    for key, cell in cells.items():
        assert close(cell.rate("selection_rate"), selection.loc[key, "selection_rate"])

    labelled = labelled_rows(rows)
    if not labelled["y_true"].size:
        return
    frame = fairlearn_frame(
        labelled,
        {
            **FAIRLEARN_RATES,
            "accuracy": accuracy_score,
            "ppv": lambda t, p: precision_score(t, p, zero_division=0),
        },
    ).by_group
    for key, cell in cells.items():
        if not cell.labelled:
            assert key not in frame.index
            continue
        for rate in (*FAIRLEARN_RATES, "accuracy", "ppv"):
            ours = cell.rate(rate)
            if cell.fraction(rate)[1] == 0:
                # The documented departure: no denominator is None here, 0.0 in Fairlearn.
                assert ours is None
                assert frame.loc[key, rate] == 0.0
            else:
                assert close(ours, frame.loc[key, rate]), (key, rate)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cell_tables())
@example({"a": Cell(n=1), "b": Cell(n=2, selected=1, tp=1, tn=1)})  # FPR ratio 0/0
@example({"a": Cell(n=1), "b": Cell(n=2, selected=1, fp=1, fn=1)})  # TPR ratio 0/0
def test_summary_figures_agree_with_fairlearn_over_the_groups_that_have_the_rate(cells):
    rows = expand(cells)
    ours = summary_metrics(cells)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dp_difference = demographic_parity_difference(
            rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
        )
        dp_ratio = demographic_parity_ratio(
            rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
        )
    assert close(ours["demographic_parity_difference"], dp_difference)
    if np.isnan(dp_ratio):  # nobody selected: Fairlearn's 0/0
        assert ours["demographic_parity_ratio"] is None
    else:
        assert close(ours["demographic_parity_ratio"], dp_ratio)

    with_positives = {key for key, cell in cells.items() if cell.tp + cell.fn}
    with_negatives = {key for key, cell in cells.items() if cell.fp + cell.tn}
    labelled = {key for key, cell in cells.items() if cell.labelled}
    if not with_positives:
        assert ours["equal_opportunity_difference"] is None
        assert ours["equal_opportunity_ratio"] is None
    else:
        tpr = fairlearn_frame(labelled_rows(rows, with_positives), {"tpr": true_positive_rate})
        assert close(ours["equal_opportunity_difference"], tpr.difference()["tpr"])
        theirs_ratio = tpr.ratio()["tpr"]
        if np.isnan(theirs_ratio):
            assert ours["equal_opportunity_ratio"] is None
        else:
            assert close(ours["equal_opportunity_ratio"], theirs_ratio)

    if with_positives == labelled and with_negatives == labelled and labelled:
        # Every labelled group has both rates: Fairlearn's own functions, no departure.
        subset = labelled_rows(rows)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arguments = (subset["y_true"], subset["y_pred"])
            features = {"sensitive_features": subset["group"]}
            eo_difference = equalized_odds_difference(*arguments, **features)
            eo_ratio = equalized_odds_ratio(*arguments, **features)
            eop_difference = equal_opportunity_difference(*arguments, **features)
            eop_ratio = equal_opportunity_ratio(*arguments, **features)
        assert close(ours["equalized_odds_difference"], eo_difference)
        assert close(ours["equal_opportunity_difference"], eop_difference)
        assert (
            ours["equal_opportunity_ratio"] is None
            if np.isnan(eop_ratio)
            else close(ours["equal_opportunity_ratio"], eop_ratio)
        )
        parts = fairlearn_frame(
            subset, {"tpr": true_positive_rate, "fpr": false_positive_rate}
        ).ratio()
        if parts.isna().any():
            # Fairlearn takes Python's min() over [TPR ratio, FPR ratio], which with a NaN
            # answers NaN or the other ratio depending on the order; ours is None (documented).
            assert ours["equalized_odds_ratio"] is None
        else:
            assert close(ours["equalized_odds_ratio"], eo_ratio)


def test_a_group_with_no_actual_positives_is_left_out_where_fairlearn_counts_zero():
    cells = {
        "men": Cell(n=20, selected=12, tp=8, fp=4, fn=2, tn=6),
        "women": Cell(n=10, selected=3, tp=0, fp=3, fn=0, tn=7),  # no actual positives
    }
    rows = labelled_rows(expand(cells))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = equal_opportunity_difference(
            rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
        )
        theirs_eo = equalized_odds_difference(
            rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
        )
    ours = summary_metrics(cells)

    assert cells["women"].rate("tpr") is None
    assert theirs == pytest.approx(0.8)  # Fairlearn: women's TPR 0.0 against men's 0.8
    assert ours["equal_opportunity_difference"] == 0.0  # only men have a TPR
    assert ours["equal_opportunity_ratio"] == 1.0
    fpr_gap = 4 / 10 - 3 / 10
    assert theirs_eo == pytest.approx(0.8)
    assert ours["equalized_odds_difference"] == pytest.approx(fpr_gap, abs=TOLERANCE)


def test_no_one_selected_gives_no_ratio_where_fairlearn_gives_nan():
    cells = {"a": Cell(n=5), "b": Cell(n=7)}
    rows = expand(cells)
    theirs = demographic_parity_ratio(
        rows["y_true"], rows["y_pred"], sensitive_features=rows["group"]
    )
    assert np.isnan(theirs)
    assert summary_metrics(cells)["demographic_parity_ratio"] is None
    assert summary_metrics(cells)["demographic_parity_difference"] == 0.0


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        # Newcombe (1998), Stat. Med. 17:857, Table I, method 3 (score interval, no correction).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_intervals_match_the_published_values(successes, n, low, high):
    assert wilson(successes, n) == pytest.approx((low, high), abs=5e-5)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_bounds_are_where_the_score_test_reaches_z(pair):
    """Each bound p solves |x/n - p| = z sqrt(p (1 - p) / n): an independent definition."""
    successes, n = pair
    low, high = wilson(successes, n)
    z = stats.norm.ppf(0.975)
    observed = successes / n
    assert 0.0 <= low <= observed <= high <= 1.0
    for bound in (low, high):
        if 0.0 < bound < 1.0:
            statistic = abs(observed - bound) / math.sqrt(bound * (1 - bound) / n)
            assert statistic == pytest.approx(z, rel=1e-7)
    assert wilson(0, 0) is None


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 400), st.integers(1, 400), st.data())
def test_disparity_p_values_are_scipys_fisher_or_chi_square(n1, n2, data):
    a, b = data.draw(st.integers(0, n1)), data.draw(st.integers(0, n2))
    p_value, test = disparity_test(a, n1, b, n2)
    table = [[a, n1 - a], [b, n2 - b]]
    assert test == "fisher"  # under 1,000 decisions
    assert p_value == stats.fisher_exact(table).pvalue


@settings(max_examples=200, deadline=None)
@given(st.integers(1000, 200_000), st.integers(1000, 200_000), st.data())
def test_chi_square_p_values_are_scipys_for_large_tables(n1, n2, data):
    a = data.draw(st.integers(n1 // 20, n1 - n1 // 20))
    b = data.draw(st.integers(n2 // 20, n2 - n2 // 20))
    p_value, test = disparity_test(a, n1, b, n2)
    expected = stats.chi2_contingency([[a, n1 - a], [b, n2 - b]], correction=False).pvalue
    assert test == "chi2"
    assert p_value == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_large_tables_use_pearsons_chi_square_without_correction():
    p_value, test = disparity_test(3000, 10000, 2500, 9000)
    expected = stats.chi2_contingency([[3000, 7000], [2500, 6500]], correction=False).pvalue
    assert test == "chi2"
    assert p_value == pytest.approx(expected, rel=1e-9)
    # A rare outcome keeps Fisher's test even in a large sample.
    assert disparity_test(1, 5000, 2, 5000)[1] == "fisher"


def test_median_bucket_is_where_half_the_scores_are_reached():
    assert median_bucket({}) is None
    assert median_bucket({3: 1}) == 3
    assert median_bucket({1: 2, 2: 2}) == 1
    assert median_bucket({1: 1, 2: 1, 5: 3}) == 5


def test_ll144_impact_ratios_leave_out_small_and_unknown_groups_and_flag_four_fifths():
    cells = {
        "men": Cell(n=600, selected=300),
        "women": Cell(n=380, selected=140),
        "other": Cell(n=15, selected=15),  # 1.5 % of the data: excluded, and would be the max
        "unknown": Cell(n=5, selected=0),
    }
    result = groups_evaluate(cells, unknown={"unknown"})
    groups = {group["key"]: group for group in result["groups"]}

    assert groups["men"]["impact_ratio"] == 1.0
    assert groups["women"]["impact_ratio"] == pytest.approx((140 / 380) / 0.5)
    assert groups["women"]["four_fifths"] is True
    assert groups["other"]["ll144_excluded"] and groups["other"]["impact_ratio"] is None
    assert groups["unknown"]["ll144_excluded"] and groups["unknown"]["unknown"]
    assert result["summary"]["four_fifths_violations"] == ["women"]
    assert result["summary"]["unknown_count"] == 5
    assert result["reference"] == "men"


def test_small_cells_are_suppressed_and_take_part_in_no_figure():
    cells = {
        "a": Cell(n=100, selected=50),
        "b": Cell(n=60, selected=20),
        "c": Cell(n=9, selected=0),
    }
    result = groups_evaluate(cells, min_cell=10)
    groups = {group["key"]: group for group in result["groups"]}
    assert groups["c"]["suppressed"] and groups["c"]["count"] is None
    assert groups["c"]["rates"]["selection_rate"]["value"] is None
    assert result["summary"]["demographic_parity_difference"] == pytest.approx(0.5 - 20 / 60)
    assert result["summary"]["suppressed_groups"] == 1


def test_reference_modes_pick_the_largest_the_most_favoured_or_the_named_group():
    cells = {"a": Cell(n=100, selected=10), "b": Cell(n=50, selected=40), "c": Cell(n=70)}
    assert groups_evaluate(cells)["reference"] == "a"
    assert groups_evaluate(cells, reference_mode="most_favoured")["reference"] == "b"
    named = groups_evaluate(cells, reference_mode="named", reference_named="c")
    assert named["reference"] == "c"
    versus = {group["key"]: group["vs_reference"] for group in named["groups"]}
    # c selects nobody: every ratio to it has no denominator.
    assert versus["a"]["selection_rate"]["ratio"] is None
    assert versus["a"]["selection_rate"]["difference"] == pytest.approx(0.1)


def test_cells_add_field_by_field():
    a = Cell(n=10, selected=4, tp=2, fp=1, fn=1, tn=3, scored=9, above=4)
    b = Cell(n=5, selected=1, tp=1, fp=0, fn=2, tn=1, scored=5, above=1)
    assert a + b == Cell(15, 5, 3, 1, 3, 4, 14, 5)
