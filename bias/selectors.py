"""Bias reports, trends and override rates, aggregated in the database from the counts table."""

from __future__ import annotations

import datetime
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from django.conf import settings
from django.db.models import Max, Min, QuerySet, Sum
from django.db.models.functions import TruncMonth, TruncWeek

from audit.models import AISystem, ModelVersion
from bias import metrics
from bias.models import UNKNOWN, AttributeSet, OutcomeCount, OutcomeMapping
from bias.services import SCORE_BUCKETS

# Labels that count as favourable (selected; a positive ground truth) for a system without its
# own OutcomeMapping. Compared case-insensitively.
DEFAULT_FAVOURABLE = frozenset(
    {
        "1",
        "accept",
        "accepted",
        "approve",
        "approved",
        "favorable",
        "favourable",
        "good",
        "grant",
        "granted",
        "hire",
        "hired",
        "interview",
        "pass",
        "positive",
        "repaid",
        "score>=threshold",
        "selected",
        "shortlist",
        "shortlisted",
        "true",
        "yes",
    }
)
SEPARATOR = "|"
OUTCOMES = ("ai", "final")
REFERENCE_MODES = ("largest", "most_favoured")


class ReportError(ValueError):
    """A report parameter that cannot be honoured; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def min_cell() -> int:
    return int(getattr(settings, "BIAS_MIN_CELL", 10))


# A public cell: one attribute set, one model version, one calendar month (docs/bias.md).
PublicCell = tuple[int, int, datetime.date]
PUBLIC_WINDOWS = (
    "public reports cover whole calendar months: `from` the first day of a month, `to` the "
    "last day of a month (e.g. from=2026-03-01&to=2026-04-30), either or both left out"
)


def _month(value: datetime.date | datetime.datetime) -> datetime.date:
    """TruncMonth's answer as a date (SQLite may give a datetime)."""
    return value.date() if isinstance(value, datetime.datetime) else value


def _month_end(month: datetime.date) -> datetime.date:
    following = (month.replace(day=1) + datetime.timedelta(days=32)).replace(day=1)
    return following - datetime.timedelta(days=1)


def _window_check(
    date_from: datetime.date | None, date_to: datetime.date | None, *, public: bool
) -> None:
    """Dates the wrong way round are refused for everyone; for a public reader, a window that
    cuts a month too: a figure over part of a month could be subtracted from one over the whole
    month, and the public cells are whole months."""
    if date_from and date_to and date_from > date_to:
        raise ReportError("from", "the window starts after it ends")
    if not public:
        return
    if date_from is not None and date_from.day != 1:
        raise ReportError("from", PUBLIC_WINDOWS)
    if date_to is not None and (date_to + datetime.timedelta(days=1)).day != 1:
        raise ReportError("to", PUBLIC_WINDOWS)


def public_cells(*, system: AISystem) -> set[PublicCell]:
    """The system's public cells: (attribute set, model version, month) with at least
    min_cell() decisions. Every public figure is a sum over these cells only; the others are
    dropped whole, so no choice of window, model version, attributes or reference can be
    subtracted from another to learn anything about them."""
    rows = (
        OutcomeCount.objects.filter(system=system)
        .annotate(month=TruncMonth("day"))
        .values_list("attribute_set_id", "model_version_id", "month")
        .annotate(total=Sum("count"))
        .filter(total__gte=min_cell())
        .order_by()
    )
    return {(set_id, version_id, _month(month)) for set_id, version_id, month, _ in rows}


def _summed(
    counts: QuerySet[OutcomeCount], fields: Sequence[str], kept: set[PublicCell] | None
) -> list[tuple[Any, ...]]:
    """(*fields, total count) rows of the counts; with `kept` (a public reader), summed over
    the kept cells only."""
    if kept is None:
        return list(counts.values_list(*fields).annotate(total=Sum("count")).order_by())
    cell_fields = ("attribute_set_id", "model_version_id", "month")
    extra = [name for name in fields if name not in cell_fields]
    rows = (
        counts.annotate(month=TruncMonth("day"))
        .values_list(*cell_fields, *extra)
        .annotate(total=Sum("count"))
        .order_by()
    )
    summed: dict[tuple[Any, ...], int] = defaultdict(int)
    for *values, total in rows:
        named = dict(zip((*cell_fields, *extra), values, strict=True))
        named["month"] = _month(named["month"])
        if (named["attribute_set_id"], named["model_version_id"], named["month"]) in kept:
            summed[tuple(named[name] for name in fields)] += total
    return [(*values, total) for values, total in summed.items()]


VIEW_PERMISSION = "bias.view_outcomecount"


def bias_access(*, user: Any, system: AISystem, api_key: Any = None) -> str | None:
    """What a reader may see of a system's bias reports: "full" (its own API key, or staff with
    the bias.view_outcomecount permission), "public" (a public system: small groups
    suppressed) or None (a private system: nothing, not even that it exists)."""
    if api_key is not None and getattr(api_key, "system_id", None) == system.pk:
        return "full"
    if user is not None and user.is_authenticated and user.has_perm(VIEW_PERMISSION):
        return "full"
    return "public" if system.is_public else None


def bias_attributes(*, system: AISystem, public: bool = False) -> list[str]:
    """The names of the protected attributes the system's decisions report, sorted; for a
    public reader, those of the attribute sets of kept public cells only (a name sent only with
    a dropped cell would tell that it exists)."""
    sets = AttributeSet.objects.filter(system=system)
    if public:
        sets = sets.filter(id__in={set_id for set_id, _, _ in public_cells(system=system)})
    names: set[str] = set()
    for stored in sets.values_list("attributes", flat=True):
        names.update(stored)
    return sorted(names)


def favourable_labels(system: AISystem) -> tuple[frozenset[str], frozenset[str]]:
    """(favourable decision labels, favourable actual-outcome labels), lower-cased."""
    mapping = OutcomeMapping.objects.filter(system=system).first()
    decided = [str(label).lower() for label in mapping.favourable_labels] if mapping else []
    actual = [str(label).lower() for label in mapping.favourable_actual_labels] if mapping else []
    return frozenset(decided or DEFAULT_FAVOURABLE), frozenset(actual or DEFAULT_FAVOURABLE)


def _counts(
    system: AISystem,
    model_version: ModelVersion | None,
    date_from: datetime.date | None,
    date_to: datetime.date | None,
) -> QuerySet[OutcomeCount]:
    rows = OutcomeCount.objects.filter(system=system)
    if model_version is not None:
        rows = rows.filter(model_version=model_version)
    if date_from is not None:
        rows = rows.filter(day__gte=date_from)
    if date_to is not None:
        rows = rows.filter(day__lte=date_to)
    return rows


class _Groups:
    """Maps attribute sets to the groups of the requested attributes (missing = "unknown")."""

    def __init__(self, system: AISystem, attributes: Sequence[str], set_ids: Iterable[int]):
        self.attributes = list(attributes)
        self.key_of: dict[int, str] = {}
        self.values: dict[str, dict[str, str]] = {}
        stored = AttributeSet.objects.filter(system=system, id__in=set(set_ids))
        for set_id, stored_attributes in stored.values_list("id", "attributes"):
            values = {name: stored_attributes.get(name, UNKNOWN) for name in self.attributes}
            key = SEPARATOR.join(values.values())
            self.key_of[set_id] = key
            self.values[key] = values

    @property
    def unknown(self) -> set[str]:
        return {key for key, values in self.values.items() if UNKNOWN in values.values()}


def _attributes_check(
    system: AISystem, attributes: Sequence[str], *, public: bool = False
) -> list[str]:
    names = [name.strip() for name in attributes if name.strip()]
    if not names:
        raise ReportError("attributes", "name at least one protected attribute")
    if len(set(names)) != len(names):
        raise ReportError("attributes", "an attribute is named twice")
    reported = set(bias_attributes(system=system, public=public))
    missing = [name for name in names if name not in reported]
    if reported and missing:
        raise ReportError(
            "attributes",
            f"no decision of {system.slug} reports {', '.join(missing)}; "
            f"it reports {', '.join(sorted(reported))}",
        )
    return names


def _reference_parse(reference: str | None, attributes: Sequence[str]) -> tuple[str, str | None]:
    if reference in (None, "", "largest"):
        return "largest", None
    if reference in REFERENCE_MODES:
        return reference, None  # type: ignore[return-value]
    if len(reference.split(SEPARATOR)) != len(attributes):  # type: ignore[union-attr]
        raise ReportError(
            "reference",
            f"name one value per attribute, joined by {SEPARATOR!r} in the order "
            f"{SEPARATOR.join(attributes)}; or 'largest' or 'most_favoured'",
        )
    return "named", reference


def _cells_build(
    rows: Iterable[tuple[int, str, str, int]],
    groups: _Groups,
    favourable: frozenset[str],
    favourable_actual: frozenset[str],
) -> dict[str, list[int]]:
    """[n, selected, tp, fp, fn, tn] per group, from (set id, label, actual, count) rows."""
    cells: dict[str, list[int]] = defaultdict(lambda: [0] * 6)
    for set_id, label, actual, count in rows:
        cell = cells[groups.key_of[set_id]]
        chosen = label.lower() in favourable
        cell[0] += count
        cell[1] += count if chosen else 0
        if actual != UNKNOWN:
            positive = actual.lower() in favourable_actual
            cell[
                {(True, True): 2, (True, False): 3, (False, True): 4, (False, False): 5}[
                    (chosen, positive)
                ]
            ] += count
    return cells


def _evaluate(
    cells: Mapping[str, metrics.Cell],
    groups: _Groups,
    keys_values: Mapping[str, dict[str, str]],
    *,
    mode: str,
    named: str | None,
    public: bool,
    tested: Collection[str] = metrics.RATES,
) -> dict[str, Any]:
    unknown = {key for key, values in keys_values.items() if UNKNOWN in values.values()}
    evaluated = metrics.groups_evaluate(
        cells,
        unknown=unknown & set(cells),
        reference_mode=mode,
        reference_named=named,
        min_cell=min_cell() if public else None,
        tested=tested,
    )
    for group in evaluated["groups"]:
        group["values"] = keys_values[group["key"]]
    return evaluated


def bias_report_build(
    *,
    system: AISystem,
    attributes: Sequence[str],
    reference: str | None = None,
    model_version: ModelVersion | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    outcome: str = "ai",
    public: bool = False,
    tested: Collection[str] = metrics.RATES,
) -> dict[str, Any]:
    """The bias report of one system over the decisions of the window, per group of the named
    attributes (their intersection), with marginals per attribute; see docs/bias.md for its
    shape. `public` counts only the kept public cells (public_cells) and refuses windows that
    are not whole months. `tested`: the rates given p-values (every one by default, as the API
    and audits publish)."""
    if outcome not in OUTCOMES:
        raise ReportError("outcome", f"choose one of {', '.join(OUTCOMES)}")
    _window_check(date_from, date_to, public=public)
    kept = public_cells(system=system) if public else None
    attributes = _attributes_check(system, attributes, public=public)
    mode, named = _reference_parse(reference, attributes)
    favourable, favourable_actual = favourable_labels(system)
    counts = _counts(system, model_version, date_from, date_to)
    label = "predicted" if outcome == "ai" else "final"
    rows = _summed(counts, ("attribute_set_id", label, "actual"), kept)
    buckets = _summed(
        counts.filter(score_bucket__gte=0), ("attribute_set_id", "score_bucket"), kept
    )
    groups = _Groups(system, attributes, {row[0] for row in rows})
    if kept is None:
        span = counts.aggregate(first=Min("day"), last=Max("day"))
        first_day, last_day = span["first"], span["last"]
    else:
        # Whole months: the days of a kept cell are not public figures either.
        months = sorted(month for month, _ in _summed(counts, ("month",), kept))
        first_day = months[0] if months else None
        last_day = _month_end(months[-1]) if months else None
    raw = _cells_build(rows, groups, favourable, favourable_actual)
    histogram: dict[int, int] = defaultdict(int)
    for _, bucket, total in buckets:
        histogram[bucket] += total
    median = metrics.median_bucket(histogram)
    scored: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for set_id, bucket, total in buckets:
        entry = scored[groups.key_of[set_id]]
        entry[0] += total
        entry[1] += total if median is not None and bucket > median else 0
    cells = {
        key: metrics.Cell(*values, *scored.get(key, (0, 0)))  # type: ignore[misc]
        for key, values in raw.items()
        if values[0]
    }
    # A group of dropped cells only is not listed: it answers as a group with no data at all.
    if named is not None and named not in cells:
        raise ReportError("reference", f"no group {named!r} in this window")
    evaluated = _evaluate(
        cells, groups, groups.values, mode=mode, named=named, public=public, tested=tested
    )
    marginals: dict[str, Any] = {}
    if len(attributes) > 1:
        for position, name in enumerate(attributes):
            summed: dict[str, metrics.Cell] = defaultdict(metrics.Cell)
            for key, cell in cells.items():
                summed[key.split(SEPARATOR)[position]] += cell
            part = named.split(SEPARATOR)[position] if named else None
            marginal = _evaluate(
                summed,
                groups,
                {value: {name: value} for value in summed},
                mode=mode,
                named=part,
                public=public,
                tested=tested,
            )
            marginals[name] = marginal["groups"]
    low_high = (
        {
            "index": median,
            "low": median / SCORE_BUCKETS,
            "high": (median + 1) / SCORE_BUCKETS,
        }
        if median is not None
        else None
    )
    return {
        "system": system.slug,
        "system_name": system.name,
        "attributes": attributes,
        "outcome": outcome,
        "model_version": f"{model_version.name} {model_version.version}" if model_version else None,
        "date_from": date_from.isoformat() if date_from else None,
        "date_to": date_to.isoformat() if date_to else None,
        "first_day": first_day.isoformat() if first_day else None,
        "last_day": last_day.isoformat() if last_day else None,
        "public": public,
        "min_cell": min_cell() if public else None,
        "favourable_labels": sorted(favourable),
        "favourable_actual_labels": sorted(favourable_actual),
        "total": sum(cell.n for cell in cells.values()),
        "labelled": sum(cell.labelled for cell in cells.values()),
        "scored": sum(cell.scored for cell in cells.values()),
        "reference": {"mode": mode, "group": evaluated["reference"]},
        "score_buckets": SCORE_BUCKETS,
        "median_score_bucket": low_high,
        "groups": evaluated["groups"],
        "marginals": marginals,
        "summary": evaluated["summary"],
    }


def bias_trends(
    *,
    system: AISystem,
    attributes: Sequence[str],
    period: str = "week",
    reference: str | None = None,
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
    outcome: str = "ai",
    public: bool = False,
) -> list[dict[str, Any]]:
    """Per model version and week or month: each group's count, selection rate and impact ratio,
    and the summary figures, oldest first. A public reader's trends are by month, over the kept
    public cells only (a week cuts the cells)."""
    if period not in ("week", "month"):
        raise ReportError("period", "choose week or month")
    if public and period != "month":
        raise ReportError("period", "public trends are by month, the public cells' period")
    if outcome not in OUTCOMES:
        raise ReportError("outcome", f"choose one of {', '.join(OUTCOMES)}")
    _window_check(date_from, date_to, public=public)
    kept = public_cells(system=system) if public else None
    attributes = _attributes_check(system, attributes, public=public)
    mode, named = _reference_parse(reference, attributes)
    favourable, favourable_actual = favourable_labels(system)
    label = "predicted" if outcome == "ai" else "final"
    truncate = TruncWeek("day") if period == "week" else TruncMonth("day")
    rows = _summed(
        _counts(system, None, date_from, date_to).annotate(period=truncate),
        ("model_version_id", "period", "attribute_set_id", label, "actual"),
        kept,
    )
    groups = _Groups(system, attributes, {row[2] for row in rows})
    versions = {
        version.pk: f"{version.name} {version.version}"
        for version in ModelVersion.objects.filter(pk__in={row[0] for row in rows})
    }
    by_point: dict[tuple[int, datetime.date], list[tuple[int, str, str, int]]] = defaultdict(list)
    for version_id, start, set_id, chosen, actual, total in rows:
        if isinstance(start, datetime.datetime):
            start = start.date()
        by_point[(version_id, start)].append((set_id, chosen, actual, total))
    points = []
    for (version_id, start), point_rows in sorted(
        by_point.items(), key=lambda item: (item[0][1], versions[item[0][0]])
    ):
        raw = _cells_build(point_rows, groups, favourable, favourable_actual)
        cells = {key: metrics.Cell(*values) for key, values in raw.items() if values[0]}  # type: ignore[misc]
        point_named = named if named in cells else None
        evaluated = _evaluate(
            cells,
            groups,
            groups.values,
            mode=mode if point_named or mode != "named" else "largest",
            named=point_named,
            public=public,
            tested=(),  # a trend point shows rates and ratios, never a p-value
        )
        points.append(
            {
                "model_version": versions[version_id],
                "period_start": start.isoformat(),
                "total": sum(cell.n for cell in cells.values()),
                "reference": evaluated["reference"],
                "groups": {
                    group["key"]: {
                        "count": group["count"],
                        "selection_rate": group["rates"]["selection_rate"]["value"],
                        "impact_ratio": group["impact_ratio"],
                    }
                    for group in evaluated["groups"]
                },
                "summary": evaluated["summary"],
            }
        )
    return points


def override_rates_by_group(
    *,
    system: AISystem,
    attributes: Sequence[str],
    date_from: datetime.date | None = None,
    date_to: datetime.date | None = None,
) -> list[dict[str, Any]]:
    """Per group: decisions whose review is final, how many of them changed the AI's label, and
    that rate with its Wilson interval."""
    attributes = _attributes_check(system, attributes)
    rows = list(
        _counts(system, None, date_from, date_to)
        .filter(reviewed=True)
        .values_list("attribute_set_id", "predicted", "final")
        .annotate(total=Sum("count"))
        .order_by()
    )
    groups = _Groups(system, attributes, {row[0] for row in rows})
    tallies: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for set_id, predicted, final, total in rows:
        tally = tallies[groups.key_of[set_id]]
        tally[0] += total
        tally[1] += total if predicted != final else 0
    answer = []
    for key in sorted(tallies):
        reviewed, overridden = tallies[key]
        interval = metrics.wilson(overridden, reviewed)
        answer.append(
            {
                "key": key,
                "values": groups.values[key],
                "reviewed": reviewed,
                "overridden": overridden,
                "rate": overridden / reviewed if reviewed else None,
                "low": interval[0] if interval else None,
                "high": interval[1] if interval else None,
            }
        )
    return answer
