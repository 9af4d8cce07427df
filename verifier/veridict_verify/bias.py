"""The bias report of docs/bias.md, recomputed from decisions an auditor opened from the leaves.

A second implementation, written from the definitions of docs/bias.md and sharing no code with
the server's `bias/` app: standard library only, no Django, no scipy. `bias_report_recompute`
answers the JSON shape of `bias.selectors.bias_report_build` (the API's and a published audit's
report), and `report_compare` names every figure in which two such reports differ.

From leaves to records
----------------------
One `DecisionRecord` per decision that counts (a decision corrected by a later one, through the
later one's `supersedes`, is left out: the correction counts instead). `record_from_leaves`
builds it from what an evidence package opens:

=====================  ==================================================================
record field           comes from
=====================  ==================================================================
``attributes``         the opening of the decision leaf's ``commitments.protected_attributes``
                       (``{name: value}`` as sent; ``None`` or ``{}`` when none were sent)
``predicted``          the decision leaf's ``output`` and ``threshold``: `label_from_output`
``actual``             the ``actual`` of the decision's latest outcome leaf (log order):
                       `label_from_output` without a threshold; ``"unknown"`` without one
``final``              the final output of the review that closed the decision, labelled with
                       the decision's ``threshold``; ``None`` while no review became final
``score_bucket``       the decision leaf's ``output.score``: `score_bucket_from_output`
``model_version``      the decision leaf's ``model``: ``"<name> <version>"``
``day``                the decision leaf's ``occurred_at``, as a UTC date
=====================  ==================================================================

Where a server's report can differ from the recomputed one, whatever the leaves:

- the decisions of erased subjects: the server keeps their counts (docs/bias.md), an auditor
  cannot open their attributes, so every figure differs by exactly those decisions;
- a corrected decision leaves an empty row in the server's counts table: the full view's
  `first_day`/`last_day` may then be the day of a decision that no longer counts, and an
  attribute that only corrected decisions reported is still accepted there (with every group
  `unknown`), where this module refuses it. Neither is a figure of docs/bias.md; both are named
  by `report_compare`.
"""

from __future__ import annotations

import datetime
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

UNKNOWN = "unknown"
LABEL_MAX = 100
SCORE_BUCKETS = 20  # scores in twentieths of [0, 1]
NO_SCORE = -1
SEPARATOR = "|"  # joins a group's values into its key, in the order of the attributes asked for
ABOVE_THRESHOLD = "score>=threshold"
BELOW_THRESHOLD = "score<threshold"
# docs/bias.md, "Labels and what is favourable": the labels favourable without a mapping.
DEFAULT_FAVOURABLE = frozenset(
    "approve approved accept accepted grant granted hire hired selected shortlist shortlisted "
    "interview pass yes true 1 positive favourable favorable good repaid score>=threshold".split()
)
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
REFERENCE_MODES = ("largest", "most_favoured")
OUTCOMES = ("ai", "final")
Z_95 = statistics.NormalDist().inv_cdf(0.975)  # two-sided 95 %
FOUR_FIFTHS = 0.8  # EEOC's rule of thumb
LL144_SHARE_DIVISOR = 50  # LL144: a category under 2 % (1/50) of the decisions may be left out
CHI2_MIN_TOTAL = 1000  # docs/bias.md: chi-square from 1,000 decisions ...
CHI2_MIN_EXPECTED = 5  # ... and no expected cell count under 5; Fisher's exact test otherwise
DEFAULT_MIN_CELL = 10  # BIAS_MIN_CELL's default


class RecomputeError(ValueError):
    """A report parameter that cannot be honoured; `field` names it as the API would."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DecisionRecord:
    """One decision as an auditor opened it (see the module docstring for the leaf fields)."""

    attributes: Mapping[str, Any] | None
    predicted: str
    model_version: str
    day: datetime.date
    actual: str = UNKNOWN
    final: str | None = None
    score_bucket: int = NO_SCORE


# --- From leaf openings to records (docs/bias.md, "What is counted", "Labels") ---------------


def label_from_output(output: Mapping[str, Any] | None, threshold: float | None = None) -> str:
    """docs/bias.md: `label`; else `value` (a string, or a number as %g); else `score>=threshold`
    or `score<threshold` when there are both; else "unknown". Stripped, at most 100 characters,
    an empty one "unknown"."""
    if not output:
        return UNKNOWN
    label = output.get("label")
    value = output.get("value")
    if label is None and isinstance(value, str):
        label = value
    elif label is None and isinstance(value, int | float) and not isinstance(value, bool):
        label = f"{value:g}"
    if label is None:
        score = output.get("score")
        if threshold is None or not isinstance(score, int | float) or isinstance(score, bool):
            return UNKNOWN
        return ABOVE_THRESHOLD if score >= threshold else BELOW_THRESHOLD
    return str(label).strip()[:LABEL_MAX] or UNKNOWN


def score_bucket_from_output(output: Mapping[str, Any] | None) -> int:
    """The twentieth of [0, 1] the score falls in (0-19, clamped at the ends), or -1 without a
    numeric score."""
    score = (output or {}).get("score")
    if not isinstance(score, int | float) or isinstance(score, bool) or math.isnan(score):
        return NO_SCORE
    return max(0, min(SCORE_BUCKETS - 1, math.floor(score * SCORE_BUCKETS)))


def attributes_normalise(attributes: Mapping[str, Any] | None) -> tuple[tuple[str, str], ...]:
    """The attribute set: names sorted, values as stripped strings (at most 100 characters), an
    empty or null value "unknown"."""
    normal = []
    for name, value in (attributes or {}).items():
        text = UNKNOWN if value is None else (str(value).strip()[:LABEL_MAX] or UNKNOWN)
        normal.append((str(name), text))
    return tuple(sorted(normal))


def record_from_leaves(
    *,
    decision: Mapping[str, Any],
    protected_attributes: Mapping[str, Any] | None,
    actual: Mapping[str, Any] | None = None,
    final_output: Mapping[str, Any] | None = None,
) -> DecisionRecord:
    """A record from a decision leaf's body, the opening of its protected attributes, the
    `actual` of its latest outcome leaf and the final output of its closing review."""
    output = decision.get("output")
    threshold = decision.get("threshold")
    occurred = datetime.datetime.fromisoformat(decision["occurred_at"].replace("Z", "+00:00"))
    return DecisionRecord(
        attributes=protected_attributes,
        predicted=label_from_output(output, threshold),
        model_version=f"{decision['model']['name']} {decision['model']['version']}",
        day=occurred.astimezone(datetime.UTC).date(),
        actual=label_from_output(actual) if actual is not None else UNKNOWN,
        final=label_from_output(final_output, threshold) if final_output is not None else None,
        score_bucket=score_bucket_from_output(output),
    )


# --- Statistics --------------------------------------------------------------------------------


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float] | None:
    """Wilson's score interval (Wilson 1927; Newcombe 1998, method 3):
    (x + z²/2 ± z·sqrt(x(n−x)/n + z²/4)) / (n + z²), exactly 0 at x = 0 and 1 at x = n."""
    if trials <= 0:
        return None
    z2 = z * z
    centre = successes + z2 / 2
    half = z * math.sqrt(successes * (trials - successes) / trials + z2 / 4)
    low = 0.0 if successes == 0 else max(0.0, (centre - half) / (trials + z2))
    high = 1.0 if successes == trials else min(1.0, (centre + half) / (trials + z2))
    return low, high


def chi_square_p(table: tuple[tuple[int, int], tuple[int, int]]) -> float:
    """Pearson's chi-square test of a 2x2 table without continuity correction: the sum of
    (observed − expected)² / expected over its cells, against chi-square with one degree of
    freedom, whose survival function is erfc(sqrt(x / 2))."""
    rows = [sum(row) for row in table]
    columns = [table[0][j] + table[1][j] for j in (0, 1)]
    total = sum(rows)
    statistic = 0.0
    for i in (0, 1):
        for j in (0, 1):
            expected = rows[i] * columns[j] / total
            statistic += (table[i][j] - expected) ** 2 / expected
    return math.erfc(math.sqrt(statistic / 2))


def fisher_exact_p(table: tuple[tuple[int, int], tuple[int, int]]) -> float:
    """Fisher's exact test of a 2x2 table, two-sided: the probability, under the hypergeometric
    law of the top-left cell given the margins, of every table at most as probable as the one
    observed. Probabilities are taken relative to the mode (one product per step, so no
    factorial overflows), and a table whose probability is within float noise of the observed
    one's is compared exactly, with integers (symmetric tables tie exactly)."""
    (a, b), (c, d) = table
    row_one, row_two, column_one = a + b, c + d, a + c
    low, high = max(0, column_one - row_two), min(row_one, column_one)
    if low == high:
        return 1.0
    mode = min(high, max(low, (column_one + 1) * (row_one + 1) // (row_one + row_two + 2)))

    def step(x: int) -> float:
        """P(x + 1) / P(x)."""
        return (row_one - x) * (column_one - x) / ((x + 1) * (row_two - column_one + x + 1))

    weights = {mode: 1.0}
    for x in range(mode, high):
        weights[x + 1] = weights[x] * step(x)
    for x in range(mode, low, -1):
        weights[x - 1] = weights[x] / step(x - 1)

    def exact(x: int) -> int:
        return math.comb(row_one, x) * math.comb(row_two, column_one - x)

    observed = weights[a]
    kept = 0.0
    for x, weight in weights.items():
        if weight < observed * (1 - 1e-9) or (observed == 0.0 and weight == 0.0):
            kept += weight
        elif weight <= observed * (1 + 1e-9) and exact(x) <= exact(a):
            kept += weight
    return min(1.0, kept / math.fsum(weights.values()))


def proportions_test(
    successes_one: int, trials_one: int, successes_two: int, trials_two: int
) -> tuple[float, str] | None:
    """docs/bias.md: the two-sided p-value that two proportions differ, and its test: Pearson's
    chi-square when the two groups have at least 1,000 decisions together and no expected count
    is under 5, Fisher's exact test otherwise."""
    if trials_one <= 0 or trials_two <= 0:
        return None
    table = (
        (successes_one, trials_one - successes_one),
        (successes_two, trials_two - successes_two),
    )
    total = trials_one + trials_two
    columns = (successes_one + successes_two, total - successes_one - successes_two)
    # expected = row · column / total ≥ 5, in integers
    large = all(
        row * column >= CHI2_MIN_EXPECTED * total
        for row in (trials_one, trials_two)
        for column in columns
    )
    if total >= CHI2_MIN_TOTAL and large:
        return chi_square_p(table), "chi2"
    return fisher_exact_p(table), "fisher"


# --- Tallies of a group --------------------------------------------------------------------------


@dataclass
class Tally:
    """One group's counts: `n` decisions, `selected` favourable ones; the confusion matrix over
    those with a known outcome; `scored` decisions with a score, `above` of them in a bucket
    above the report's median bucket."""

    n: int = 0
    selected: int = 0
    tp: int = 0
    fp: int = 0
    fn: int = 0
    tn: int = 0
    scored: int = 0
    above: int = 0

    def add(self, other: Tally) -> None:
        for name in ("n", "selected", "tp", "fp", "fn", "tn", "scored", "above"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    @property
    def labelled(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    def fraction(self, rate: str) -> tuple[int, int]:
        """The numerator and denominator of a rate (docs/bias.md, "The figures")."""
        if rate == "selection_rate":
            return self.selected, self.n
        if rate == "tpr":
            return self.tp, self.tp + self.fn
        if rate == "fnr":
            return self.fn, self.tp + self.fn
        if rate == "fpr":
            return self.fp, self.fp + self.tn
        if rate == "tnr":
            return self.tn, self.fp + self.tn
        if rate == "ppv":
            return self.tp, self.tp + self.fp
        if rate == "npv":
            return self.tn, self.tn + self.fn
        if rate == "accuracy":
            return self.tp + self.tn, self.labelled
        if rate == "scoring_rate":
            return self.above, self.scored
        raise KeyError(rate)

    def rate(self, rate: str) -> float | None:
        """A rate with no denominator is null (docs/bias.md, "Where this departs")."""
        numerator, denominator = self.fraction(rate)
        return numerator / denominator if denominator else None


def quotient(numerator: float | None, denominator: float | None) -> float | None:
    """A ratio; null when either side is null or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def median_bucket(histogram: Mapping[int, int]) -> int | None:
    """docs/bias.md: the first bucket at which half of the scored decisions are reached."""
    total = sum(histogram.values())
    reached = 0
    for bucket in sorted(histogram):
        reached += histogram[bucket]
        if total and 2 * reached >= total:
            return bucket
    return None


# --- Groups, reference, LL144 and summary -------------------------------------------------------


def reference_pick(
    tallies: Mapping[str, Tally], *, unknown: set[str], mode: str, named: str | None
) -> str | None:
    """docs/bias.md "Reference group": the named group, else among the groups without an unknown
    value the largest or the most favoured (highest selection rate, then the larger); ties go
    to the first key in sorted order."""
    if mode == "named":
        return named if named in tallies else None
    candidates = sorted(key for key in tallies if key not in unknown)
    if not candidates:
        return None

    def order(key: str) -> tuple[float, ...]:
        tally = tallies[key]
        if mode == "most_favoured":
            return (tally.selected / tally.n, tally.n)
        return (tally.n,)

    best = candidates[0]
    for key in candidates[1:]:
        if order(key) > order(best):
            best = key
    return best


def spread(values: Iterable[float | None]) -> tuple[float | None, float | None]:
    """Fairlearn's between_groups difference (max − min) and ratio (min ÷ max), over the groups
    whose rate exists."""
    present = [value for value in values if value is not None]
    if not present:
        return None, None
    return max(present) - min(present), quotient(min(present), max(present))


def summary_figures(tallies: Mapping[str, Tally]) -> dict[str, float | None]:
    """Demographic parity, equalized odds (the larger difference and the smaller ratio of TPR and
    FPR; null when a part that exists has no ratio) and equal opportunity (of the TPRs)."""
    parity = spread(tally.rate("selection_rate") for tally in tallies.values())
    tpr = spread(tally.rate("tpr") for tally in tallies.values())
    fpr = spread(tally.rate("fpr") for tally in tallies.values())
    parts = [part for part in (tpr, fpr) if part[0] is not None]
    differences = [part[0] for part in parts if part[0] is not None]
    ratios = [part[1] for part in parts]
    odds_ratio = None
    if ratios and all(ratio is not None for ratio in ratios):
        odds_ratio = min(ratio for ratio in ratios if ratio is not None)
    return {
        "demographic_parity_difference": parity[0],
        "demographic_parity_ratio": parity[1],
        "equalized_odds_difference": max(differences) if differences else None,
        "equalized_odds_ratio": odds_ratio,
        "equal_opportunity_difference": tpr[0],
        "equal_opportunity_ratio": tpr[1],
    }


def groups_figures(
    tallies: Mapping[str, Tally],
    values: Mapping[str, dict[str, str]],
    *,
    mode: str,
    named: str | None,
) -> tuple[list[dict[str, Any]], str | None, dict[str, Any]]:
    """Each group's entry, sorted by key, the reference group's key and the summary."""
    unknown = {key for key in tallies if UNKNOWN in values[key].values()}
    total = sum(tally.n for tally in tallies.values())
    reference_key = reference_pick(tallies, unknown=unknown, mode=mode, named=named)
    reference = tallies[reference_key] if reference_key is not None else None
    # LL144: categories with an unknown value or under 2 % of the decisions are left out.
    included = {
        key
        for key, tally in tallies.items()
        if key not in unknown and tally.n * LL144_SHARE_DIVISOR >= total
    }
    best_selection = max(
        (rate for key in included if (rate := tallies[key].rate("selection_rate")) is not None),
        default=None,
    )
    best_scoring = max(
        (rate for key in included if (rate := tallies[key].rate("scoring_rate")) is not None),
        default=None,
    )
    entries = []
    for key in sorted(tallies):
        tally = tallies[key]
        impact = quotient(tally.rate("selection_rate"), best_selection) if key in included else None
        entries.append(
            {
                "key": key,
                "unknown": key in unknown,
                # Public groups are sums of kept cells of at least min_cell decisions each, so
                # none is small: docs/bias.md keeps the field for the report's shape.
                "suppressed": False,
                "ll144_excluded": key not in included,
                "count": tally.n,
                "share": tally.n / total,
                "selected": tally.selected,
                "labelled": tally.labelled,
                "tp": tally.tp,
                "fp": tally.fp,
                "fn": tally.fn,
                "tn": tally.tn,
                "scored": tally.scored,
                "scored_above_median": tally.above,
                "rates": {rate: rate_entry(tally, rate) for rate in RATES},
                "vs_reference": {rate: versus_entry(tally, reference, rate) for rate in RATES},
                "impact_ratio": impact,
                "scoring_impact_ratio": (
                    quotient(tally.rate("scoring_rate"), best_scoring) if key in included else None
                ),
                "four_fifths": impact < FOUR_FIFTHS if impact is not None else None,
                "values": values[key],
            }
        )
    rated = [
        (entry["impact_ratio"], entry["key"])
        for entry in entries
        if entry["impact_ratio"] is not None
    ]
    lowest = min(rated) if rated else None
    summary: dict[str, Any] = dict(summary_figures(tallies))
    summary.update(
        {
            "min_impact_ratio": lowest[0] if lowest else None,
            "min_impact_group": lowest[1] if lowest else None,
            "four_fifths_violations": [entry["key"] for entry in entries if entry["four_fifths"]],
            "unknown_count": sum(tallies[key].n for key in unknown),
            "suppressed_groups": 0,
        }
    )
    return entries, reference_key, summary


def rate_entry(tally: Tally, rate: str) -> dict[str, float | None]:
    """A rate and its 95 % Wilson interval."""
    numerator, denominator = tally.fraction(rate)
    interval = wilson_interval(numerator, denominator)
    return {
        "value": tally.rate(rate),
        "low": interval[0] if interval else None,
        "high": interval[1] if interval else None,
    }


def versus_entry(tally: Tally, reference: Tally | None, rate: str) -> dict[str, Any]:
    """The group's difference and ratio to the reference group for one rate, with the p-value
    that the two proportions differ."""
    mine = tally.rate(rate)
    theirs = reference.rate(rate) if reference is not None else None
    tested = None
    if reference is not None and mine is not None and theirs is not None:
        tested = proportions_test(*tally.fraction(rate), *reference.fraction(rate))
    return {
        "difference": mine - theirs if mine is not None and theirs is not None else None,
        "ratio": quotient(mine, theirs),
        "p_value": tested[0] if tested else None,
        "test": tested[1] if tested else None,
    }


# --- The report ----------------------------------------------------------------------------------


def _month_of(day: datetime.date) -> datetime.date:
    return day.replace(day=1)


def _month_last_day(month: datetime.date) -> datetime.date:
    following = (month + datetime.timedelta(days=31)).replace(day=1)
    return following - datetime.timedelta(days=1)


def public_records(records: Sequence[DecisionRecord], *, min_cell: int) -> list[DecisionRecord]:
    """docs/bias.md "Small cells": the decisions of the kept cells only. A cell is one attribute
    set × model version × calendar month, over all of the system's decisions; one with fewer
    than min_cell decisions is dropped whole before any figure is formed."""
    sizes: dict[tuple[Any, ...], int] = defaultdict(int)
    for record in records:
        sizes[_cell_of(record)] += 1
    return [record for record in records if sizes[_cell_of(record)] >= min_cell]


def _cell_of(record: DecisionRecord) -> tuple[Any, ...]:
    return (attributes_normalise(record.attributes), record.model_version, _month_of(record.day))


def _window_check(
    date_from: datetime.date | None, date_to: datetime.date | None, *, public: bool
) -> None:
    if date_from and date_to and date_from > date_to:
        raise RecomputeError("from", "the window starts after it ends")
    if public and date_from is not None and date_from.day != 1:
        raise RecomputeError("from", "public reports cover whole calendar months")
    if public and date_to is not None and (date_to + datetime.timedelta(days=1)).day != 1:
        raise RecomputeError("to", "public reports cover whole calendar months")


def _reference_mode(reference: str | None, attributes: Sequence[str]) -> tuple[str, str | None]:
    if reference in (None, "", "largest"):
        return "largest", None
    if reference in REFERENCE_MODES:
        return str(reference), None
    if len(str(reference).split(SEPARATOR)) != len(attributes):
        raise RecomputeError("reference", "name one value per attribute, or a reference mode")
    return "named", reference


def bias_report_recompute(
    *,
    records: Sequence[DecisionRecord],
    attributes: Sequence[str],
    reference: str | None = None,
    model_version: str | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    outcome: str = "ai",
    public: bool = False,
    min_cell: int = DEFAULT_MIN_CELL,
    favourable_labels: Iterable[str] = (),
    favourable_actual_labels: Iterable[str] = (),
    system: str = "",
    system_name: str = "",
) -> dict[str, Any]:
    """The bias report of docs/bias.md over `records` (all of a system's counted decisions), in
    the JSON shape of the server's report. `model_version` is "<name> <version>"; the
    favourable labels default to docs/bias.md's list when empty (a report names the ones it
    used); `public` applies the fixed-cell rule with `min_cell`."""
    if outcome not in OUTCOMES:
        raise RecomputeError("outcome", f"choose one of {', '.join(OUTCOMES)}")
    _window_check(date_from, date_to, public=public)
    names = [name.strip() for name in attributes if name.strip()]
    if not names or len(set(names)) != len(names):
        raise RecomputeError("attributes", "name each protected attribute once")
    universe = public_records(records, min_cell=min_cell) if public else list(records)
    reported = {name for record in universe for name, _ in attributes_normalise(record.attributes)}
    if reported and not reported.issuperset(names):
        raise RecomputeError("attributes", "an attribute no decision reports")
    mode, named = _reference_mode(reference, names)
    favourable = frozenset(label.lower() for label in favourable_labels) or DEFAULT_FAVOURABLE
    favourable_actual = (
        frozenset(label.lower() for label in favourable_actual_labels) or DEFAULT_FAVOURABLE
    )
    chosen = [
        record
        for record in universe
        if (model_version is None or record.model_version == model_version)
        and (date_from is None or record.day >= date_from)
        and (date_to is None or record.day <= date_to)
    ]
    histogram: dict[int, int] = defaultdict(int)
    for record in chosen:
        if record.score_bucket >= 0:
            histogram[record.score_bucket] += 1
    median = median_bucket(histogram)
    tallies: dict[str, Tally] = defaultdict(Tally)
    values: dict[str, dict[str, str]] = {}
    for record in chosen:
        attribute_set = dict(attributes_normalise(record.attributes))
        group = {name: attribute_set.get(name, UNKNOWN) for name in names}
        key = SEPARATOR.join(group.values())
        values[key] = group
        tallies[key].add(record_tally(record, outcome, favourable, favourable_actual, median))
    if named is not None and named not in tallies:
        raise RecomputeError("reference", f"no group {named!r} in this window")
    groups, reference_key, summary = groups_figures(tallies, values, mode=mode, named=named)
    marginals = {}
    if len(names) > 1:
        for position, name in enumerate(names):
            summed: dict[str, Tally] = defaultdict(Tally)
            for key, tally in tallies.items():
                summed[key.split(SEPARATOR)[position]].add(tally)
            part = named.split(SEPARATOR)[position] if named else None
            marginals[name] = groups_figures(
                summed, {value: {name: value} for value in summed}, mode=mode, named=part
            )[0]
    days = sorted(record.day for record in chosen)
    first_day, last_day = (days[0], days[-1]) if days else (None, None)
    if public and days:
        first_day, last_day = _month_of(days[0]), _month_last_day(_month_of(days[-1]))
    return {
        "system": system,
        "system_name": system_name,
        "attributes": names,
        "outcome": outcome,
        "model_version": model_version,
        "date_from": date_from.isoformat() if date_from else None,
        "date_to": date_to.isoformat() if date_to else None,
        "first_day": first_day.isoformat() if first_day else None,
        "last_day": last_day.isoformat() if last_day else None,
        "public": public,
        "min_cell": min_cell if public else None,
        "favourable_labels": sorted(favourable),
        "favourable_actual_labels": sorted(favourable_actual),
        "total": sum(tally.n for tally in tallies.values()),
        "labelled": sum(tally.labelled for tally in tallies.values()),
        "scored": sum(tally.scored for tally in tallies.values()),
        "reference": {"mode": mode, "group": reference_key},
        "score_buckets": SCORE_BUCKETS,
        "median_score_bucket": (
            {
                "index": median,
                "low": median / SCORE_BUCKETS,
                "high": (median + 1) / SCORE_BUCKETS,
            }
            if median is not None
            else None
        ),
        "groups": groups,
        "marginals": marginals,
        "summary": summary,
    }


def record_tally(
    record: DecisionRecord,
    outcome: str,
    favourable: frozenset[str],
    favourable_actual: frozenset[str],
    median: int | None,
) -> Tally:
    """One decision's contribution: favourable or not (its AI label, or its final label with
    outcome="final"), its confusion-matrix cell when its outcome is known, its score."""
    label = record.predicted if outcome == "ai" or record.final is None else record.final
    selected = label.lower() in favourable
    tally = Tally(n=1, selected=int(selected))
    if record.actual != UNKNOWN:
        positive = record.actual.lower() in favourable_actual
        cell = {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}
        setattr(tally, cell[(selected, positive)], 1)
    if record.score_bucket >= 0:
        tally.scored = 1
        tally.above = int(median is not None and record.score_bucket > median)
    return tally


# --- Comparing two reports -----------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """A figure in which two reports differ: its path (e.g. `groups[female|black].rates.tpr.low`)
    and its value in each (None when absent)."""

    path: str
    ours: Any
    theirs: Any


_MISSING = object()


def report_compare(
    ours: Mapping[str, Any], theirs: Mapping[str, Any], tolerance: float = 1e-9
) -> list[Difference]:
    """Every figure in which two reports differ. Floats (rates, ratios, p-values) may differ by
    `tolerance` (absolute, or relative to their size); counts (integers), labels, flags and keys
    must be equal, in type too. Groups are matched by key, so a group found in one report
    only is named as such."""
    found: list[Difference] = []
    _compare(ours, theirs, "", tolerance, found)
    return found


def _compare(ours: Any, theirs: Any, path: str, tolerance: float, found: list[Difference]) -> None:
    if isinstance(ours, Mapping) and isinstance(theirs, Mapping):
        for name in list(ours) + [name for name in theirs if name not in ours]:
            _compare(
                ours.get(name, _MISSING),
                theirs.get(name, _MISSING),
                f"{path}.{name}" if path else str(name),
                tolerance,
                found,
            )
        return
    if _keyed(ours) and _keyed(theirs):
        ours_by_key = {entry["key"]: entry for entry in ours}
        theirs_by_key = {entry["key"]: entry for entry in theirs}
        for key in list(ours_by_key) + [key for key in theirs_by_key if key not in ours_by_key]:
            _compare(
                ours_by_key.get(key, _MISSING),
                theirs_by_key.get(key, _MISSING),
                f"{path}[{key}]",
                tolerance,
                found,
            )
        return
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        for index, (mine, other) in enumerate(zip(ours, theirs, strict=True)):
            _compare(mine, other, f"{path}[{index}]", tolerance, found)
        return
    if not _same(ours, theirs, tolerance):
        found.append(
            Difference(
                path,
                None if ours is _MISSING else ours,
                None if theirs is _MISSING else theirs,
            )
        )


def _keyed(value: Any) -> bool:
    """A list of groups: entries with a `key`."""
    return isinstance(value, list) and all(
        isinstance(entry, Mapping) and "key" in entry for entry in value
    )


def _same(ours: Any, theirs: Any, tolerance: float) -> bool:
    if ours is _MISSING or theirs is _MISSING:
        return ours is theirs
    numbers = (int, float)
    if (
        isinstance(ours, numbers)
        and isinstance(theirs, numbers)
        and not isinstance(ours, bool)
        and not isinstance(theirs, bool)
    ):
        # Our rates are floats, our counts integers. Canonical JSON (RFC 8785, as published
        # audits are stored) writes a rate of 1.0 as 1, so theirs may be either: a rate is
        # compared within the tolerance, a count exactly.
        if isinstance(ours, float):
            return math.isclose(ours, theirs, rel_tol=tolerance, abs_tol=tolerance)
        return bool(ours == theirs)
    if type(ours) is not type(theirs):
        return False
    return bool(ours == theirs)
