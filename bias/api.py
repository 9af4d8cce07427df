"""The bias report API: GET /api/v1/bias/report as JSON or CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.models import AISystem, ModelVersion, SystemAPIKey
from bias import metrics
from bias.selectors import ReportError, bias_access, bias_report_build
from timestamping.api import BAD_REQUEST, NOT_FOUND, READS_THROTTLED
from veridict.ratelimit import AnonymousAddressThrottle


class CSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data: Any, accepted_media_type: Any = None, renderer_context: Any = None):
        return data if isinstance(data, str | bytes) else JSONRenderer().render(data)


class ReportQuerySerializer(serializers.Serializer):
    system = serializers.SlugField(help_text="The AI system's slug.")
    attributes = serializers.CharField(
        help_text="Protected attributes, comma-separated; several make an intersection."
    )
    reference = serializers.CharField(
        required=False,
        help_text="largest (default), most_favoured, or a group: its values joined by | in the "
        "order of `attributes`, e.g. male|white.",
    )
    model_version = serializers.CharField(
        required=False, help_text="name:version, or the version alone if only one name has it."
    )
    # `from` is a Python keyword: declared below under its URL name.
    to = serializers.DateField(
        required=False,
        help_text="Last day, inclusive (UTC); for a public reader the last day of a month.",
    )
    outcome = serializers.ChoiceField(
        choices=["ai", "final"], default="ai", help_text="The AI's outcome or the final one."
    )
    public = serializers.BooleanField(
        default=False, help_text="Suppress small groups even for a reader who may see all."
    )
    format = serializers.ChoiceField(choices=["json", "csv"], default="json")


ReportQuerySerializer._declared_fields["from"] = serializers.DateField(
    required=False,
    help_text="First day, inclusive (UTC); for a public reader the first day of a month.",
)


def _model_version(system: AISystem, text: str) -> ModelVersion:
    name, _, version = text.rpartition(":")
    found = ModelVersion.objects.filter(system=system, version=version)
    if name:
        found = found.filter(name=name)
    versions = list(found[:2])
    if len(versions) != 1:
        problem = "is not a model version of" if not versions else "is ambiguous in"
        raise ValidationError({"model_version": [f"{text!r} {problem} {system.slug}"]})
    return versions[0]


def _cell_text(value: Any) -> Any:
    """Attribute names and values come from AI systems: one that a spreadsheet would run as a
    formula is quoted (OWASP's CSV injection advice)."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def report_csv(report: dict[str, Any]) -> str:
    """One line per group and marginal group: counts, rates with intervals, ratios, p-values."""
    out = io.StringIO()
    writer = csv.writer(out)
    names = [_cell_text(name) for name in report["attributes"]]  # sent by AI systems too
    header = ["level", "group", *names, "unknown", "suppressed", "count", "share"]
    header += ["selected", "labelled", "tp", "fp", "fn", "tn", "scored", "scored_above_median"]
    for rate in metrics.RATES:
        header += [rate, f"{rate}_low", f"{rate}_high", f"{rate}_ratio_to_reference"]
        header += [f"{rate}_p_value"]
    header += ["impact_ratio", "scoring_impact_ratio", "ll144_excluded", "four_fifths"]
    writer.writerow(header)
    levels = [("intersection", report["groups"])]
    levels += [(f"marginal:{name}", groups) for name, groups in report["marginals"].items()]
    for level, groups in levels:
        for group in groups:
            values = [_cell_text(group["values"].get(name, "")) for name in report["attributes"]]
            row = [level, _cell_text(group["key"]), *values, group["unknown"], group["suppressed"]]
            row += [group[name] for name in ("count", "share", "selected", "labelled")]
            row += [group[name] for name in ("tp", "fp", "fn", "tn", "scored")]
            row += [group["scored_above_median"]]
            for rate in metrics.RATES:
                entry, versus = group["rates"][rate], group["vs_reference"][rate]
                row += [entry["value"], entry["low"], entry["high"], versus["ratio"]]
                row += [versus["p_value"]]
            row += [group["impact_ratio"], group["scoring_impact_ratio"]]
            row += [group["ll144_excluded"], group["four_fifths"]]
            writer.writerow(["" if cell is None else cell for cell in row])
    return out.getvalue()


class BiasReadThrottle(AnonymousAddressThrottle):
    scope = "bias"  # one budget with the dashboard's pages


class BiasReportView(APIView):
    renderer_classes = [JSONRenderer, CSVRenderer]
    throttle_classes = [BiasReadThrottle]

    @extend_schema(
        summary="A system's bias audit report",
        description=(
            "Per group of the named protected attributes (their intersection, with marginals): "
            "counts, selection rate, TPR, FPR, FNR, TNR, PPV, NPV, accuracy and the LL144 "
            "scoring rate with 95 % Wilson intervals; differences and ratios to a reference "
            "group with p-values (Fisher's exact test, or chi-square for large counts); NYC LL144 "
            "impact ratios and the four-fifths flag; demographic parity, equalized odds and "
            "equal opportunity as Fairlearn defines them. A public system's report is readable "
            "by anyone over whole calendar months, counting only the cells (attribute values × "
            "model version × month) of at least the minimum cell size; a private system's "
            "only by its own API key or staff with the bias.view_outcomecount permission. "
            "See docs/bias.md."
        ),
        parameters=[ReportQuerySerializer],
        responses={
            (200, "application/json"): OpenApiTypes.OBJECT,
            (200, "text/csv"): OpenApiTypes.STR,
            400: BAD_REQUEST,
            404: NOT_FOUND,
            429: READS_THROTTLED,
        },
    )
    def get(self, request: Request) -> HttpResponse:
        query = ReportQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        params = query.validated_data
        system = AISystem.objects.filter(slug=params["system"]).first()
        api_key = request.auth if isinstance(request.auth, SystemAPIKey) else None
        access = system and bias_access(user=request.user, system=system, api_key=api_key)
        if system is None or access is None:
            # A private system's existence is not revealed to those who may not read it.
            raise NotFound({"system": [f"no AI system {params['system']!r} you may read"]})
        model_version = (
            _model_version(system, params["model_version"]) if "model_version" in params else None
        )
        try:
            report = bias_report_build(
                system=system,
                attributes=params["attributes"].split(","),
                reference=params.get("reference"),
                model_version=model_version,
                date_from=params.get("from"),
                date_to=params.get("to"),
                outcome=params["outcome"],
                public=params["public"] or access != "full",
            )
        except ReportError as exc:
            raise ValidationError({exc.field: [str(exc)]}) from exc
        if params["format"] == "csv" or request.accepted_renderer.format == "csv":
            filename = f"bias-{system.slug}.csv"
            return HttpResponse(
                report_csv(report),
                content_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="{filename}"'},
            )
        return Response(report)
