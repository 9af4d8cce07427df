"""Fairness metrics over group counts: rates with Wilson intervals, disparities, LL144 ratios.

Pure Python and scipy, no Django: every figure is computed from additive counts (Cell), so a
marginal is the sum of its intersections' cells. A rate whose denominator is zero is None and
is left out of every difference, ratio and summary (Fairlearn reports 0.0 there; docs/bias.md).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

Z_95 = 1.959963984540054  # the 0.975 quantile of the standard normal
FOUR_FIFTHS = 0.8
LL144_MIN_SHARE = 0.02  # LL144: categories under 2 % of the data may be left out of impact ratios
# A 2x2 table goes to Pearson's chi-square (no continuity correction) when it is large and no
# expected count is small; to Fisher's exact test otherwise.
CHI2_MIN_TOTAL = 1000
CHI2_MIN_EXPECTED = 5.0

RATES = (
    "selection_rate",
    "tpr",
    "fpr",
    "fnr",
    "tnr",
    "ppv",
    "npv",
    "accuracy",
    "scoring_rate",
)


@dataclass(frozen=True)
class Cell:
    """Counts of one group. tp/fp/fn/tn cover decisions whose actual outcome is known; `above`
    counts scored decisions in a score bucket above the whole sample's median bucket."""

    n: int = 0
    selected: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    scored: int = 0
    above: int = 0

    def __add__(self, other: Cell) -> Cell:
        return Cell(
            *(getattr(self, f.name) + getattr(other, f.name) for f in fields(Cell))  # type: ignore[arg-type]
        )

    @property
    def labelled(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def fraction(self, rate: str) -> tuple[int, int]:
        """(numerator, denominator) of a rate."""
        tp, fp, fn, tn = self.tp, self.fp, self.fn, self.tn
        return {
            "selection_rate": (self.selected, self.n),
            "tpr": (tp, tp + fn),
            "fpr": (fp, fp + tn),
            "fnr": (fn, tp + fn),
            "tnr": (tn, fp + tn),
            "ppv": (tp, tp + fp),
            "npv": (tn, tn + fn),
            "accuracy": (tp + tn, self.labelled),
            "scoring_rate": (self.above, self.scored),
        }[rate]

    def rate(self, rate: str) -> float | None:
        numerator, denominator = self.fraction(rate)
        return numerator / denominator if denominator else None


def wilson(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson's score interval for a proportion (Wilson 1927; Newcombe 1998, method 3)."""
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # At 0 and n the bounds are exactly 0 and 1; rounding would leave them a hair inside.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def disparity_test(a: int, n1: int, b: int, n2: int) -> tuple[float, str] | None:
    """Two-sided p-value that a/n1 and b/n2 differ, and the test used ("fisher" or "chi2")."""
    if n1 <= 0 or n2 <= 0:
        return None
    table = [[a, n1 - a], [b, n2 - b]]
    total = n1 + n2
    columns = (a + b, total - a - b)
    expected = min(row * column / total for row in (n1, n2) for column in columns)
    if total >= CHI2_MIN_TOTAL and expected >= CHI2_MIN_EXPECTED:
        # Pearson's statistic of a 2x2 table in closed form; with one degree of freedom its
        # survival function is erfc(sqrt(x / 2)). scipy's chi2_contingency gives the same
        # (tests/bias/test_metrics.py) at a millisecond of argument checking per call.
        statistic = total * (a * (n2 - b) - b * (n1 - a)) ** 2 / (n1 * n2 * columns[0] * columns[1])
        return math.erfc(math.sqrt(statistic / 2)), "chi2"
    # Imported here: scipy.stats adds about 95 MB to a process's RSS, and this module is loaded
    # by every process (the admin imports it), while only small tables ever need Fisher's test.
    from scipy import stats

    return float(stats.fisher_exact(table).pvalue), "fisher"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def spread(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Fairlearn's between-groups difference (max - min) and ratio (min / max) over the values
    that exist."""
    present = [value for value in values if value is not None]
    if not present:
        return None, None
    low, high = min(present), max(present)
    return high - low, _ratio(low, high)


def summary_metrics(cells: Mapping[str, Cell]) -> dict[str, float | None]:
    """Demographic parity, equalized odds and equal opportunity as Fairlearn defines them
    (between groups; equalized odds is the worse of the TPR and FPR figures)."""
    dp_difference, dp_ratio = spread(cell.rate("selection_rate") for cell in cells.values())
    tpr_difference, tpr_ratio = spread(cell.rate("tpr") for cell in cells.values())
    fpr_difference, fpr_ratio = spread(cell.rate("fpr") for cell in cells.values())
    present = [value for value in (tpr_difference, fpr_difference) if value is not None]
    # A rate that exists but is 0 in every group has no ratio (0/0): Fairlearn's equalized odds
    # ratio is then NaN, and ours None.
    parts = [
        (difference, ratio)
        for difference, ratio in ((tpr_difference, tpr_ratio), (fpr_difference, fpr_ratio))
        if difference is not None
    ]
    ratios = [ratio for _, ratio in parts]
    return {
        "demographic_parity_difference": dp_difference,
        "demographic_parity_ratio": dp_ratio,
        "equalized_odds_difference": max(present) if present else None,
        "equalized_odds_ratio": min(ratios) if ratios and None not in ratios else None,  # type: ignore[type-var]
        "equal_opportunity_difference": tpr_difference,
        "equal_opportunity_ratio": tpr_ratio,
    }


def median_bucket(histogram: Mapping[int, int]) -> int | None:
    """The bucket holding the median of all scores: the first whose cumulative count reaches
    half of them."""
    total = sum(histogram.values())
    if total <= 0:
        return None
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if 2 * seen >= total:
            return bucket
    return max(histogram)  # pragma: no cover -- the loop always reaches half


def reference_choose(
    cells: Mapping[str, Cell], *, mode: str, named: str | None, eligible: Iterable[str]
) -> str | None:
    """The reference group: the largest, the most favoured (highest selection rate; the larger
    on a tie) or the one named. Ties go to the first key in sorted order."""
    candidates = sorted(eligible)
    if mode == "named":
        return named if named in cells else None
    if not candidates:
        return None
    if mode == "most_favoured":
        rated = [key for key in candidates if cells[key].rate("selection_rate") is not None]
        if not rated:
            return None
        return max(rated, key=lambda key: (cells[key].rate("selection_rate"), cells[key].n))
    return max(candidates, key=lambda key: cells[key].n)


def _rate_entry(cell: Cell, rate: str) -> dict[str, float | None]:
    numerator, denominator = cell.fraction(rate)
    interval = wilson(numerator, denominator)
    return {
        "value": numerator / denominator if denominator else None,
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def _versus(cell: Cell, reference: Cell | None, rate: str, *, test: bool = True) -> dict[str, Any]:
    if reference is None:
        return {"difference": None, "ratio": None, "p_value": None, "test": None}
    value, base = cell.rate(rate), reference.rate(rate)
    tested = None
    if test and value is not None and base is not None:
        tested = disparity_test(*cell.fraction(rate), *reference.fraction(rate))
    return {
        "difference": value - base if value is not None and base is not None else None,
        "ratio": _ratio(value, base),
        "p_value": tested[0] if tested else None,
        "test": tested[1] if tested else None,
    }


def groups_evaluate(
    cells: Mapping[str, Cell],
    *,
    unknown: Iterable[str] = (),
    reference_mode: str = "largest",
    reference_named: str | None = None,
    min_cell: int | None = None,
    tested: Collection[str] = RATES,
) -> dict[str, Any]:
    """Every group's counts, rates with intervals, comparison with the reference group and LL144
    impact ratios, and the summary figures.

    `unknown`: keys of groups with an unknown attribute value (reported, never the reference nor
    in LL144 ratios). `min_cell`: suppress groups with fewer decisions (public views): their
    counts and rates are None and they take part in no figure, not even the total a share is
    of or the unknown count, which would give them away by subtraction. `tested`: the rates
    whose difference from the reference gets a p-value (the others' are None): an exact test per
    group and rate dominates the cost of a page that shows few of them.
    """
    unknown = set(unknown)
    suppressed = {key for key, cell in cells.items() if min_cell is not None and cell.n < min_cell}
    shown = {key: cell for key, cell in cells.items() if key not in suppressed}
    total = sum(cell.n for cell in shown.values())
    reference_key = reference_choose(
        shown,
        mode=reference_mode,
        named=reference_named,
        eligible=[key for key in shown if key not in unknown],
    )
    reference = shown.get(reference_key) if reference_key is not None else None
    ll144 = {
        key
        for key, cell in shown.items()
        if key not in unknown and total and cell.n / total >= LL144_MIN_SHARE
    }
    best_selection = max(
        (rate for key in ll144 if (rate := shown[key].rate("selection_rate")) is not None),
        default=None,
    )
    best_scoring = max(
        (rate for key in ll144 if (rate := shown[key].rate("scoring_rate")) is not None),
        default=None,
    )
    groups = []
    for key in sorted(cells):
        cell = cells[key]
        entry: dict[str, Any] = {
            "key": key,
            "unknown": key in unknown,
            "suppressed": key in suppressed,
            "ll144_excluded": key not in ll144,
        }
        if key in suppressed:
            entry.update(
                {name: None for name in ("count", "share", "selected", "labelled", "scored")}
            )
            entry.update({name: None for name in ("tp", "fp", "fn", "tn", "scored_above_median")})
            entry["rates"] = {rate: {"value": None, "low": None, "high": None} for rate in RATES}
            entry["vs_reference"] = {rate: _versus(cell, None, rate) for rate in RATES}
            entry.update({"impact_ratio": None, "scoring_impact_ratio": None, "four_fifths": None})
            groups.append(entry)
            continue
        impact = _ratio(cell.rate("selection_rate"), best_selection) if key in ll144 else None
        scoring = _ratio(cell.rate("scoring_rate"), best_scoring) if key in ll144 else None
        entry.update(
            {
                "count": cell.n,
                "share": cell.n / total if total else None,
                "selected": cell.selected,
                "labelled": cell.labelled,
                "tp": cell.tp,
                "fp": cell.fp,
                "fn": cell.fn,
                "tn": cell.tn,
                "scored": cell.scored,
                "scored_above_median": cell.above,
                "rates": {rate: _rate_entry(cell, rate) for rate in RATES},
                "vs_reference": {
                    rate: _versus(cell, reference, rate, test=rate in tested) for rate in RATES
                },
                "impact_ratio": impact,
                "scoring_impact_ratio": scoring,
                "four_fifths": impact < FOUR_FIFTHS if impact is not None else None,
            }
        )
        groups.append(entry)
    impacts = [
        (group["impact_ratio"], group["key"])
        for group in groups
        if group["impact_ratio"] is not None
    ]
    worst = min(impacts) if impacts else None
    unknown_count = sum(shown[key].n for key in unknown if key in shown)
    summary: dict[str, Any] = summary_metrics(shown)
    summary.update(
        {
            "min_impact_ratio": worst[0] if worst else None,
            "min_impact_group": worst[1] if worst else None,
            "four_fifths_violations": [group["key"] for group in groups if group["four_fifths"]],
            "unknown_count": unknown_count,
            "suppressed_groups": len(suppressed),
        }
    )
    return {"reference": reference_key, "groups": groups, "summary": summary}
