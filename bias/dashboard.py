"""What the dashboard pages show of a bias report: filters, plain-language summary, charts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.http import QueryDict
from django.utils.safestring import SafeString

from audit.models import AISystem, ModelVersion
from bias import charts
from bias.selectors import SEPARATOR

FOUR_FIFTHS = 0.8
# Group labels read as people: "women are selected at 0.71 times the rate of men".
PEOPLE = {"female": "women", "male": "men", "woman": "women", "man": "men"}
# The categories NYC LL144 summaries report, in this order, when a system records them.
LL144_ATTRIBUTES = ("sex", "gender", "race", "ethnicity", "race_ethnicity")
TREND_GROUPS = 6  # lines on a trend chart: the largest groups; the table has every one
ERROR_RATES = (
    ("tpr", "TPR"),
    ("fpr", "FPR"),
    ("fnr", "FNR"),
    ("tnr", "TNR"),
    ("ppv", "PPV"),
    ("npv", "NPV"),
    ("accuracy", "Accuracy"),
)


class ReportFilters(forms.Form):
    """The dashboard's filters, read from the query string: a bookmarkable, shareable view."""

    attributes = forms.MultipleChoiceField(
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Tick two or more for their intersection.",
    )
    reference = forms.CharField(required=False, max_length=500, label="Reference group")
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.none(), required=False, empty_label="All versions"
    )
    date_from = forms.DateField(
        required=False, label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )
    outcome = forms.ChoiceField(
        required=False,
        choices=[("ai", "The AI's decision"), ("final", "The final decision, after human review")],
        widget=forms.RadioSelect,
        label="Outcome",
    )
    period = forms.ChoiceField(
        required=False, choices=[("week", "Week"), ("month", "Month")], label="Trend by"
    )

    def __init__(self, *args: Any, system: AISystem, attribute_names: Sequence[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.attribute_names = list(attribute_names)
        self.fields["attributes"].choices = [
            (name, name.replace("_", " ")) for name in attribute_names
        ]
        self.fields["model_version"].queryset = ModelVersion.objects.filter(system=system).order_by(
            "name", "version"
        )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        # Checkbox order, not click order: an intersection's key is always built the same way.
        chosen = set(cleaned.get("attributes") or [])
        cleaned["attributes"] = [name for name in self.attribute_names if name in chosen]
        cleaned["outcome"] = cleaned.get("outcome") or "ai"
        cleaned["period"] = cleaned.get("period") or "week"
        cleaned["reference"] = cleaned.get("reference") or None
        return cleaned

    def report_arguments(self) -> dict[str, Any]:
        """The bias_report_build keyword arguments these filters ask for."""
        data = self.cleaned_data
        return {
            "attributes": data["attributes"],
            "reference": data["reference"],
            "model_version": data.get("model_version"),
            "date_from": data.get("date_from"),
            "date_to": data.get("date_to"),
            "outcome": data["outcome"],
        }


def default_attributes(names: Sequence[str], *, ll144: bool = False) -> list[str]:
    """Sex (or the first attribute) on the dashboard; every LL144 category on the summary."""
    preferred = [name for name in LL144_ATTRIBUTES if name in names]
    if ll144 and preferred:
        return preferred[:2]
    return preferred[:1] or list(names[:1])


def group_label(values: dict[str, str]) -> str:
    """A group as words: "women", "people of race Asian", "women of race Asian"."""
    noun = "people"
    qualifiers = []
    for name, value in values.items():
        if name in ("sex", "gender") and value.lower() in PEOPLE:
            noun = PEOPLE[value.lower()]
        else:
            qualifiers.append(f"{name.replace('_', ' ')} {value}")
    return f"{noun} of {' and '.join(qualifiers)}" if qualifiers else noun


def short_label(group: dict[str, Any]) -> str:
    return " · ".join(group["values"].values()) if group.get("values") else group["key"]


def p_text(p_value: float | None) -> str:
    if p_value is None:
        return "no test"
    return "p < 0.001" if p_value < 0.001 else f"p = {p_value:.3f}"


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def _reference_of(groups: list[dict[str, Any]], key: str | None) -> dict[str, Any] | None:
    """The reference group of a list: the one marked so, else the one with the key given, else
    (a marginal, whose reference the report does not name) a group compared with itself: its
    selection rate is the reference rate, so its difference is exactly 0."""
    marked = [group for group in groups if group.get("is_reference")]
    if marked:
        return marked[0]
    if key is not None:
        return next((group for group in groups if group["key"] == key), None)
    itself = [
        group
        for group in groups
        if not group["suppressed"]
        and not group["unknown"]
        and group["vs_reference"]["selection_rate"]["difference"] == 0
    ]
    return max(itself, key=lambda group: group["count"], default=None)


def marginal_sections(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]], Any]]:
    """(attribute, its groups, their reference group) for each attribute of an intersection."""
    return [
        (name, groups, _reference_of(groups, None)) for name, groups in report["marginals"].items()
    ]


def selection_sentence(groups: list[dict[str, Any]], reference: dict[str, Any]) -> str | None:
    """The group selected least often relative to the reference, as words. Groups under 2 % of
    the data (LL144's rule) are passed over while a larger group can be compared."""
    comparable = [
        group
        for group in groups
        if group["key"] != reference["key"]
        and not group["suppressed"]
        and not group["unknown"]
        and group["vs_reference"]["selection_rate"]["ratio"] is not None
    ]
    candidates = [group for group in comparable if not group["ll144_excluded"]] or comparable
    if not candidates:
        return None
    worst = min(candidates, key=lambda group: group["vs_reference"]["selection_rate"]["ratio"])
    versus = worst["vs_reference"]["selection_rate"]
    side = "below" if versus["ratio"] < FOUR_FIFTHS else "at or above"
    return (
        f"{_upper_first(group_label(worst['values']))} are selected at {versus['ratio']:.2f} "
        f"times the rate of {group_label(reference['values'])}, {side} the four-fifths "
        f"threshold; {p_text(versus['p_value'])}."
    )


def summary_sentences(report: dict[str, Any]) -> list[str]:
    """The report's main findings in words; every number is the report's, rounded for reading:
    per attribute alone, then for their intersection."""
    if not report["total"]:
        return ["No decisions match these filters yet."]
    reference = _reference_of(report["groups"], report["reference"]["group"])
    if reference is None:
        return ["No group is large enough to be the reference group, so no ratio is given."]
    sentences = []
    for groups in report["marginals"].values():
        marginal_reference = _reference_of(groups, None)
        if marginal_reference is not None:
            sentences.append(selection_sentence(groups, marginal_reference))
    sentences.append(selection_sentence(report["groups"], reference))
    summary = report["summary"]
    by_key = {group["key"]: group for group in report["groups"]}
    if summary.get("min_impact_ratio") is not None:
        below = summary.get("four_fifths_violations") or []
        sentences.append(
            f"The lowest NYC LL144 impact ratio (against the most selected group) is "
            f"{summary['min_impact_ratio']:.2f}, for "
            f"{group_label(by_key[summary['min_impact_group']]['values'])}; "
            f"{len(below)} {'group falls' if len(below) == 1 else 'groups fall'} below 0.8."
        )
    if summary.get("unknown_count"):
        sentences.append(
            f"{summary['unknown_count']:,} decisions have an unknown category and are reported "
            "apart, not in the ratios."
        )
    if summary.get("suppressed_groups"):
        sentences.append(
            f"{summary['suppressed_groups']} groups have fewer than {report['min_cell']} decisions "
            "and are not shown."
        )
    return [sentence for sentence in sentences if sentence]


def rate_bars(report: dict[str, Any], rate: str = "selection_rate") -> list[charts.Bar]:
    reference = report["reference"]["group"]
    return [
        charts.Bar(
            label=short_label(group),
            value=group["rates"][rate]["value"],
            low=group["rates"][rate]["low"],
            high=group["rates"][rate]["high"],
            highlight=group["key"] == reference,
            note="suppressed" if group["suppressed"] else "",
        )
        for group in report["groups"]
    ]


def ratio_bars(report: dict[str, Any], rate: str = "selection_rate") -> list[charts.Bar]:
    reference = report["reference"]["group"]
    bars = []
    for group in report["groups"]:
        is_reference = group["key"] == reference
        bars.append(
            charts.Bar(
                label=short_label(group),
                value=group["vs_reference"][rate]["ratio"],
                highlight=is_reference,
                note="reference"
                if is_reference
                else "suppressed"
                if group["suppressed"]
                else "unknown"
                if group["unknown"]
                else "",
            )
        )
    return bars


def report_charts(report: dict[str, Any]) -> dict[str, SafeString]:
    if not report["groups"]:
        return {}
    reference = report["reference"]["group"]
    rates = charts.bars_chart(
        rate_bars(report),
        title="Selection rate by group",
        description=(
            "Share of each group's decisions that were favourable, with its 95 % Wilson "
            f"interval; the reference group is {reference or 'not set'}. The table below "
            "gives every figure."
        ),
        chart_id="selection-rates",
    )
    ratios = charts.bars_chart(
        ratio_bars(report),
        title="Selection rate ratio to the reference group",
        description=(
            "Each group's selection rate divided by the reference group's; the line at 0.8 is "
            "the four-fifths threshold."
        ),
        top=1.2,
        thresholds=[(FOUR_FIFTHS, "0.8"), (1.0, "1")],
        chart_id="selection-ratios",
    )
    return {"rates": rates, "ratios": ratios}


def trend_charts(points: list[dict[str, Any]], report: dict[str, Any]) -> dict[str, Any]:
    """Selection rate and LL144 impact ratio of the largest groups, one point per period and
    model version, with a line where each new version starts."""
    if not points:
        return {}
    sizes: dict[str, int] = {}
    for point in points:
        for key, figures in point["groups"].items():
            sizes[key] = sizes.get(key, 0) + (figures["count"] or 0)
    values_of = {group["key"]: group["values"] for group in report["groups"]}
    keys = [
        key
        for key in sorted(sizes, key=lambda k: (-sizes[k], k))
        if "unknown" not in key.split(SEPARATOR)
    ][:TREND_GROUPS]
    labels = [point["period_start"] for point in points]
    changes = [
        (position, point["model_version"])
        for position, point in enumerate(points)
        if position and point["model_version"] != points[position - 1]["model_version"]
    ]
    first = points[0]["model_version"]

    def series(figure: str) -> list[charts.Series]:
        return [
            charts.Series(
                label=" · ".join(values_of[key].values()) if key in values_of else key,
                points=[
                    (position, (point["groups"].get(key) or {}).get(figure))
                    for position, point in enumerate(points)
                ],
                colour=charts.colour(index),
            )
            for index, key in enumerate(keys)
        ]

    note = f"From {labels[0]} ({first})" + "".join(
        f"; {version} from {labels[position]}" for position, version in changes
    )
    return {
        "rates": charts.trend_chart(
            series("selection_rate"),
            labels,
            title="Selection rate over time",
            description=f"Selection rate per period of the largest groups. {note}.",
            changes=changes,
            chart_id="trend-rates",
        ),
        "ratios": charts.trend_chart(
            series("impact_ratio"),
            labels,
            title="LL144 impact ratio over time",
            description=(
                "Each group's selection rate divided by the most selected group's, per period; "
                f"the line at 0.8 is the four-fifths threshold. {note}."
            ),
            changes=changes,
            thresholds=[(FOUR_FIFTHS, "0.8")],
            chart_id="trend-ratios",
        ),
        "note": note,
        "groups": len(keys),
    }


def reference_choices(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    choices = [("most_favoured", "The most selected group"), ("largest", "The largest group")]
    if report:
        choices += [
            (group["key"], short_label(group))
            for group in report["groups"]
            if not group["suppressed"] and not group["unknown"]
        ]
    return choices


def page_query(arguments: dict[str, Any], **extra: str) -> str:
    """The dashboard's query string for these report arguments (links to the summary and back)."""
    query: dict[str, Any] = {"attributes": ",".join(arguments["attributes"])}
    for name in ("reference", "outcome"):
        if arguments.get(name):
            query[name] = arguments[name]
    if arguments.get("model_version") is not None:
        query["model_version"] = arguments["model_version"].pk
    for name in ("date_from", "date_to"):
        if arguments.get(name) is not None:
            query[name] = arguments[name].isoformat()
    query.update({name: value for name, value in extra.items() if value})
    return urlencode(query)


def api_query(system: AISystem, arguments: dict[str, Any], *, file_format: str = "json") -> str:
    """The same report from GET /api/v1/bias/report (its parameter names)."""
    query: dict[str, Any] = {"system": system.slug, "attributes": ",".join(arguments["attributes"])}
    if arguments.get("reference"):
        query["reference"] = arguments["reference"]
    version = arguments.get("model_version")
    if version is not None:
        query["model_version"] = f"{version.name}:{version.version}"
    if arguments.get("date_from") is not None:
        query["from"] = arguments["date_from"].isoformat()
    if arguments.get("date_to") is not None:
        query["to"] = arguments["date_to"].isoformat()
    query["outcome"] = arguments["outcome"]
    if file_format != "json":
        query["format"] = file_format
    return urlencode(query)


def filters_data(
    query: QueryDict, names: Sequence[str], *, ll144: bool = False, public: bool = False
) -> QueryDict:
    """The query with `attributes=sex,race` (the API's way) split as if ticked one by one, and
    the defaults filled in, so that the form shows what the report is of. Public trends are by
    month (the public cells' period), so that is their default."""
    data = query.copy()
    chosen = [name.strip() for value in query.getlist("attributes") for name in value.split(",")]
    data.setlist("attributes", chosen or default_attributes(names, ll144=ll144))
    # Ratios against the most selected group by default, as the four-fifths rule and LL144 put
    # them ("women are selected at 0.71 times the rate of men"), rather than the API's largest.
    period = "month" if public else "week"
    for name, default in (("outcome", "ai"), ("period", period), ("reference", "most_favoured")):
        if not data.get(name):
            data[name] = default
    return data
