"""Pages of the bias audit: the dashboard, the printable LL144 summary, published audits."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from audit.models import AISystem
from bias import dashboard
from bias.selectors import ReportError, bias_access, bias_attributes, bias_report_build, bias_trends
from bias.selectors_published import (
    published_audit_check,
    published_audit_get,
    published_audit_receipt,
    published_audit_report,
    published_audits,
)
from bias.services_published import PUBLISH_PERMISSION, bias_audit_publish
from veridict.ratelimit import rate_limited

# ReportError names the API's parameters; the form names two of them differently.
FORM_FIELDS = {"from": "date_from", "to": "date_to"}
SYSTEM_NEUTRAL = ("date_from", "date_to", "outcome", "period", "view")
# The only p-values the pages show (the groups tables' "Test" column and the summary sentence);
# the API and published audits carry every rate's.
SHOWN_TESTS = ("selection_rate",)
SLUG = re.compile(r"[-a-zA-Z0-9_]+")  # what the <slug:> converter accepts


def _system(request: HttpRequest, slug: str) -> tuple[AISystem, str]:
    """The system and what this reader may see of it; a private system is a 404 for others."""
    system = AISystem.objects.filter(slug=slug).first()
    access = bias_access(user=request.user, system=system) if system is not None else None
    if access is None:
        raise Http404("no AI system with a bias audit here")
    return system, access  # type: ignore[return-value]


def _filters(
    system: AISystem, data: Any, *, public: bool, ll144: bool = False
) -> dashboard.ReportFilters:
    names = bias_attributes(system=system, public=public)
    return dashboard.ReportFilters(
        dashboard.filters_data(data, names, ll144=ll144, public=public),
        system=system,
        attribute_names=names,
    )


def _report(
    form: dashboard.ReportFilters, system: AISystem, *, public: bool, trends: bool = False
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The report (and its trend points) the valid form asks for; a refused parameter becomes
    an error on its field."""
    if not form.is_valid() or not form.attribute_names:
        return None, []
    arguments = form.report_arguments()
    try:
        report = bias_report_build(system=system, public=public, tested=SHOWN_TESTS, **arguments)
        points = []
        if trends:
            points = bias_trends(
                system=system,
                attributes=arguments["attributes"],
                period=form.cleaned_data["period"],
                reference=arguments["reference"],
                date_from=arguments["date_from"],
                date_to=arguments["date_to"],
                outcome=arguments["outcome"],
                public=public,
            )
    except ReportError as exc:
        field = FORM_FIELDS.get(exc.field, exc.field)
        form.add_error(field if field in form.fields else None, str(exc))
        return None, []
    return report, points


def _readable(request: HttpRequest) -> list[tuple[AISystem, str]]:
    """Every system this reader may see the bias audit of, with how much of it."""
    return [
        (system, access)
        for system in AISystem.objects.order_by("name")
        if (access := bias_access(user=request.user, system=system)) is not None
    ]


@require_GET
def bias_index(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "bias/index.html",
        {"systems": _readable(request), "audits": published_audits(user=request.user)[:50]},
    )


@require_GET
@rate_limited("bias", anonymous_only=True)
def bias_dashboard(request: HttpRequest, slug: str) -> HttpResponse:
    chosen = request.GET.get("system")
    if chosen and chosen != slug:
        if not SLUG.fullmatch(chosen):
            raise Http404("no AI system with a bias audit here")
        # The system picker: the same window and outcome, on the other system's dashboard;
        # attributes, reference and model version belong to a system and are dropped.
        kept = {name: request.GET[name] for name in SYSTEM_NEUTRAL if request.GET.get(name)}
        return redirect(f"{reverse('bias-dashboard', args=[chosen])}?{urlencode(kept)}")
    system, access = _system(request, slug)
    preview = access == "full" and request.GET.get("view") == "public"
    public = access == "public" or preview
    form = _filters(system, request.GET, public=public)
    report, points = _report(form, system, public=public, trends=True)
    audits = list(published_audits(user=request.user, system=system)[:20])
    context: dict[str, Any] = {
        "system": system,
        "access": access,
        "public": public,
        "preview": preview,
        "form": form,
        "report": report,
        "can_publish": request.user.has_perm(PUBLISH_PERMISSION),
        "audits": audits,
        "rate_names": dashboard.ERROR_RATES,
        "systems": _readable(request),
    }
    if audits:
        # "Check it yourself": an auditor recomputes the latest published audit from the
        # system's evidence package (docs/evidence.md) and compares the two.
        latest = audits[0]
        context["check_audit"] = latest
        context["check_report_url"] = request.build_absolute_uri(
            reverse("bias-audit-report", args=[latest.pk])
        )
    if report is not None:
        arguments = form.report_arguments()
        by_key = {group["key"]: group for group in report["groups"]}
        context.update(
            {
                "sentences": dashboard.summary_sentences(report),
                "charts": dashboard.report_charts(report),
                "trends": dashboard.trend_charts(points, report),
                "reference_choices": dashboard.reference_choices(report),
                "reference_group": by_key.get(report["reference"]["group"]),
                "marginals": dashboard.marginal_sections(report),
                "page_query": dashboard.page_query(
                    arguments, period=form.cleaned_data["period"], view="public" if preview else ""
                ),
                "summary_query": dashboard.page_query(arguments, view="public" if preview else ""),
                "api_query": dashboard.api_query(system, arguments),
                "csv_query": dashboard.api_query(system, arguments, file_format="csv"),
            }
        )
    return render(request, "bias/dashboard.html", context, status=400 if form.errors else 200)


@require_GET
@rate_limited("bias", anonymous_only=True)
def bias_summary(request: HttpRequest, slug: str) -> HttpResponse:
    """The printable summary, in the shape of an NYC LL144 bias audit summary."""
    system, access = _system(request, slug)
    public = access == "public" or request.GET.get("view") == "public"
    form = _filters(system, request.GET, public=public, ll144=True)
    report, _ = _report(form, system, public=public)
    context = {
        "system": system,
        "public": public,
        "form": form,
        "report": report,
        "generated_at": timezone.now(),
        "sentences": dashboard.summary_sentences(report) if report else [],
        "dashboard_query": dashboard.page_query(form.report_arguments()) if report else "",
    }
    return render(request, "bias/summary.html", context, status=400 if form.errors else 200)


@require_POST
def bias_publish(request: HttpRequest, slug: str) -> HttpResponse:
    """Publishes the report the posted filters describe (as the public sees it)."""
    system, _ = _system(request, slug)
    form = _filters(system, request.POST, public=False)  # the report itself is public
    if not form.is_valid():
        messages.error(request, "The report's parameters are not valid: nothing was published.")
        return redirect(reverse("bias-dashboard", args=[system.slug]))
    try:
        audit = bias_audit_publish(system=system, by=request.user, **form.report_arguments())
    except ReportError as exc:
        messages.error(request, f"Nothing was published: {exc}")
        query = dashboard.page_query(form.report_arguments())
        return redirect(f"{reverse('bias-dashboard', args=[system.slug])}?{query}")
    return redirect(reverse("bias-audit", args=[audit.pk]))


def _published(request: HttpRequest, audit_id: int) -> Any:
    """The audit, if this reader may see it; a private system's is a 404 for others."""
    audit = published_audit_get(user=request.user, audit_id=audit_id)
    if audit is None:
        raise Http404("no published audit with this number")
    return audit


@require_GET
def audit_published(request: HttpRequest, audit_id: int) -> HttpResponse:
    audit = _published(request, audit_id)
    report = published_audit_report(audit)
    check = published_audit_check(audit)
    context = {
        "audit": audit,
        "report": report,
        "check": check,
        "sentences": dashboard.summary_sentences(report),
        "charts": dashboard.report_charts(report),
        "leaf_json": json.dumps(check["leaf"], indent=2, ensure_ascii=False),
    }
    return render(request, "bias/audit.html", context)


@require_GET
def audit_report_download(request: HttpRequest, audit_id: int) -> HttpResponse:
    """The report's RFC 8785 bytes exactly as hashed: `sha256sum` of the file is the leaf's
    report_sha256."""
    audit = _published(request, audit_id)
    response = HttpResponse(bytes(audit.report_canonical), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="bias-audit-{audit.pk}.json"'
    return response


@require_GET
@rate_limited("receipt", anonymous_only=True)
def audit_receipt_download(request: HttpRequest, audit_id: int) -> HttpResponse:
    audit = _published(request, audit_id)
    body = json.dumps(published_audit_receipt(audit), indent=2)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="bias-audit-{audit.pk}-receipt.json"'
    return response
