"""The review queue: its list, the item page with the review steps, oversight analytics."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db.models import Case, IntegerField, Q, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from audit.admin import ClientIdSearchMixin, decision_label
from audit.models import AISystem
from audit.services.subjects import decision_personal_data
from review import selectors
from review.admin.common import id_param, json_block, json_text
from review.models import ReviewItem
from review.permissions import PERM_APPROVE, PERM_OVERSIGHT, PERM_REVIEW, scoped
from review.services import (
    ReviewError,
    review_approve,
    review_claim,
    review_confirm,
    review_escalate,
    review_override,
    review_reject_override,
)
from staff.models import AdminEvent
from staff.services import admin_event_record
from timestamping.admin import ReadOnlyAdminMixin
from veridict.admin_links import PermittedLinksAdmin, admin_link

# The item page hands the time it was opened back with each button, signed so that the time
# spent on a review (which the oversight analytics judge reviewers by) cannot be made up.
STARTED_SALT = "review.admin.started"
STARTED_MAX_AGE = 12 * 60 * 60


class RationaleForm(forms.Form):
    rationale = forms.CharField(
        max_length=10_000,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="Required. Kept encrypted with the decision's personal data; the log holds "
        "only a salted commitment to it.",
    )


class OverrideForm(RationaleForm):
    label = forms.CharField(max_length=200, required=False, help_text="The new outcome's label.")
    score = forms.FloatField(required=False)
    value = forms.CharField(
        max_length=200, required=False, help_text="A number or a short text, if the output has one."
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("label") and cleaned.get("score") is None and not cleaned.get("value"):
            raise forms.ValidationError("Give the new outcome: a label, a score or a value.")
        return cleaned

    def output(self) -> dict[str, Any]:
        output: dict[str, Any] = {}
        if self.cleaned_data.get("label"):
            output["label"] = self.cleaned_data["label"]
        if self.cleaned_data.get("score") is not None:
            output["score"] = self.cleaned_data["score"]
        if self.cleaned_data.get("value"):
            output["value"] = _number_or_text(self.cleaned_data["value"])
        return output


def _number_or_text(value: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def _started_token(item: ReviewItem) -> str:
    return signing.dumps({"item": item.pk, "at": time.time()}, salt=STARTED_SALT)


def _started_at(request: HttpRequest, item: ReviewItem) -> datetime | None:
    """When the reviewer opened the item page, from the signed token; None if absent or forged
    (the service then counts from the claim)."""
    try:
        started = signing.loads(
            request.POST.get("started", ""), salt=STARTED_SALT, max_age=STARTED_MAX_AGE
        )
    except signing.BadSignature:
        return None
    if not isinstance(started, dict) or started.get("item") != item.pk:
        return None
    return datetime.fromtimestamp(float(started["at"]), tz=UTC)


# ---------------------------------------------------------------------------------------------
# The queue


class ActiveStatusFilter(admin.SimpleListFilter):
    """By status; without a choice, only the items still to be done."""

    title = "status"
    parameter_name = "status"
    ACTIVE = None
    ALL = "all"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [*ReviewItem.Status.choices, (self.ALL, "All, closed included")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        value = self.value()
        if value == self.ALL:
            return queryset
        if value in ReviewItem.Status.values:
            return queryset.filter(status=value)
        return queryset.exclude(status=ReviewItem.Status.CLOSED)

    def choices(self, changelist: Any) -> Any:
        yield {
            "selected": self.value() is None,
            "query_string": changelist.get_query_string(remove=[self.parameter_name]),
            "display": "To do (not closed)",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }


class OverdueFilter(admin.SimpleListFilter):
    title = "deadline"
    parameter_name = "overdue"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple]:
        return [("yes", "Overdue"), ("no", "On time")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        overdue = Q(due_at__lt=timezone.now()) & ~Q(status=ReviewItem.Status.CLOSED)
        if self.value() == "yes":
            return queryset.filter(overdue)
        if self.value() == "no":
            return queryset.exclude(overdue)
        return queryset


ACTIONS: dict[str, tuple[type[forms.Form], str]] = {
    "claim": (forms.Form, "Claimed"),
    "confirm": (RationaleForm, "Confirmed the decision"),
    "override": (OverrideForm, "Overrode the decision"),
    "escalate": (RationaleForm, "Escalated the review"),
    "approve": (RationaleForm, "Approved the override"),
    "reject": (RationaleForm, "Rejected the override"),
}


@admin.register(ReviewItem)
class ReviewItemAdmin(ClientIdSearchMixin, ReadOnlyAdminMixin, PermittedLinksAdmin):
    list_display = (
        "decision_column",
        "system_column",
        "reason_column",
        "status_column",
        "due_column",
        "claimed_by",
        "result",
    )
    list_filter = (
        ActiveStatusFilter,
        OverdueFilter,
        "reason",
        ("decision__system", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("decision__system", "decision__subject", "decision__entry", "claimed_by")
    decision_path = "decision__"
    change_form_template = "admin/review/reviewitem/change_form.html"
    fields = readonly_fields = (
        "decision_column",
        "system_column",
        "reason_column",
        "status_column",
        "due_column",
        "claimed_by_link",
        "claimed_at",
        "proposed_output_text",
        "proposed_by_link",
        "escalated_by_link",
        "result",
        "final_output_text",
        "time_spent_seconds",
        "created_at",
        "closed_at",
    )

    class Media:
        css = {"all": ("staff/admin.css",)}

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewItem]:
        now = timezone.now()
        # Not super(): it orders before the annotation that the ordering needs exists.
        queryset = self.model._default_manager.get_queryset().annotate(
            overdue_rank=Case(
                When(Q(due_at__lt=now) & ~Q(status=ReviewItem.Status.CLOSED), then=Value(0)),
                default=Value(1),
                output_field=IntegerField(),
            )
        )
        queryset = scoped(queryset, request.user, "decision__system")
        return queryset.order_by(*self.get_ordering(request))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["overdue_rank", "due_at"]

    @admin.display(description="claimed by")
    def claimed_by_link(self, item: ReviewItem) -> str:
        return admin_link(item.claimed_by)

    @admin.display(description="proposed by")
    def proposed_by_link(self, item: ReviewItem) -> str:
        return admin_link(item.proposed_by)

    @admin.display(description="escalated by")
    def escalated_by_link(self, item: ReviewItem) -> str:
        return admin_link(item.escalated_by)

    @admin.display(description="decision", ordering="decision__entry__seq")
    def decision_column(self, item: ReviewItem) -> str:
        return decision_label(item.decision)

    @admin.display(description="AI system", ordering="decision__system__name")
    def system_column(self, item: ReviewItem) -> str:
        return item.decision.system.name

    @admin.display(description="reason", ordering="reason")
    def reason_column(self, item: ReviewItem) -> str:
        detail = f": {item.reason_detail}" if item.reason_detail else ""
        return f"{item.get_reason_display()}{detail}"

    @admin.display(description="status", ordering="status")
    def status_column(self, item: ReviewItem) -> str:
        if item.closed_by == ReviewItem.ClosedBy.ERASURE:
            return f"{item.get_status_display()}: {item.get_closed_by_display()}"
        return item.get_status_display()

    @admin.display(description="due", ordering="due_at")
    def due_column(self, item: ReviewItem) -> str:
        due = f"{item.due_at:%Y-%m-%d %H:%M} UTC"
        if item.is_overdue:
            return format_html('<strong class="review-overdue">overdue since {}</strong>', due)
        return due

    @admin.display(description="proposed override")
    def proposed_output_text(self, item: ReviewItem) -> str:
        return json_block(item.proposed_output) if item.proposed_output is not None else "-"

    @admin.display(description="final outcome")
    def final_output_text(self, item: ReviewItem) -> str:
        return json_block(item.final_output) if item.final_output is not None else "-"

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view
        return [
            path("oversight/", wrap(self.oversight_view), name="review_oversight"),
            path("<path:object_id>/act/<str:action>/", wrap(self.act_view), name="review_act"),
            *super().get_urls(),
        ]

    def _actions_open_to(self, request: HttpRequest, item: ReviewItem) -> list[str]:
        """The buttons the item page shows: what the state allows and the user may try (the
        services decide; this only leaves out buttons that could not work)."""
        user, status = request.user, item.status
        if user.has_perm(PERM_REVIEW):
            if status in (ReviewItem.Status.OPEN, ReviewItem.Status.ESCALATED):
                return ["claim"]
            if status == ReviewItem.Status.CLAIMED and item.claimed_by_id == user.pk:
                return ["confirm", "override", "escalate"]
        if (
            status == ReviewItem.Status.AWAITING_APPROVAL
            and user.has_perm(PERM_APPROVE)
            and item.proposed_by_id != user.pk
        ):
            return ["approve"]
        return []

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        item = self.get_object(request, object_id)
        context = dict(extra_context or {})
        if item is not None:
            decision = item.decision
            personal = decision_personal_data(decision)
            fields = personal.get("fields", {}) if personal else {}
            context.update(
                item=item,
                decision=decision,
                decision_url=reverse("admin:audit_decision_change", args=[decision.pk]),
                decision_label=decision_label(decision),
                # What the reviewer needs to judge the decision; protected attributes are
                # left out on purpose, so that they cannot sway the review.
                inputs=json_text(fields.get("inputs")),
                explanation=json_text(fields.get("explanation")),
                erased=personal is None,
                output_text=json.dumps(decision.output, ensure_ascii=False),
                proposed_text=json.dumps(item.proposed_output, ensure_ascii=False),
                owner=selectors.decision_owner(decision=decision),
                chain=selectors.review_chain(decision=decision, verify=False),
                review_actions=self._actions_open_to(request, item),
                started=_started_token(item),
            )
        return super().change_view(request, object_id, form_url, context)

    def act_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        item = self.get_object(request, object_id)
        if item is None or action not in ACTIONS or not self.has_view_permission(request, item):
            raise PermissionDenied
        page = reverse("admin:review_reviewitem_change", args=[item.pk])
        form_class, done = ACTIONS[action]
        form = form_class(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                for error in errors:
                    messages.error(request, error)
            return HttpResponseRedirect(page)
        user, started_at = request.user, _started_at(request, item)
        rationale = form.cleaned_data.get("rationale", "")
        steps: dict[str, Callable[[], ReviewItem]] = {
            "claim": lambda: review_claim(item=item, reviewer=user),
            "confirm": lambda: review_confirm(
                item=item, reviewer=user, rationale=rationale, started_at=started_at
            ),
            "override": lambda: review_override(
                item=item,
                reviewer=user,
                rationale=rationale,
                output=form.output(),  # type: ignore[attr-defined]
                started_at=started_at,
            ),
            "escalate": lambda: review_escalate(
                item=item, reviewer=user, rationale=rationale, started_at=started_at
            ),
            "approve": lambda: review_approve(item=item, approver=user, rationale=rationale),
            "reject": lambda: review_reject_override(item=item, approver=user, rationale=rationale),
        }
        if action == "approve" and "reject" in request.POST:
            action, done = "reject", ACTIONS["reject"][1]
        try:
            item = steps[action]()
        except ReviewError as exc:
            messages.error(request, str(exc))
            return HttpResponseRedirect(page)
        admin_event_record(
            kind=AdminEvent.Kind.REVIEW,
            request=request,
            target=item,
            detail={
                "action": action,
                "decision_entry": str(item.decision.entry.uuid),
                "status": item.status,
            },
        )
        waiting = item.status == ReviewItem.Status.AWAITING_APPROVAL
        messages.success(
            request,
            f"{done}: {decision_label(item.decision)} is now "
            f"{item.get_status_display().lower()}"
            + (" until a second reviewer approves the override." if waiting else "."),
        )
        if item.status == ReviewItem.Status.CLOSED:
            return HttpResponseRedirect(reverse("admin:review_reviewitem_changelist"))
        return HttpResponseRedirect(page)

    def oversight_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(PERM_OVERSIGHT):
            raise PermissionDenied
        systems = AISystem.objects.order_by("name")
        system_id = id_param(request.GET.get("system"))
        system = systems.filter(pk=system_id).first() if system_id else None
        stats = selectors.oversight_stats(system=system)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Oversight analytics",
            "systems": systems,
            "system": system,
            "stats": stats,
            "by_group": _override_rates_by_group(systems=[system] if system else list(systems)),
        }
        return TemplateResponse(request, "admin/review/oversight.html", context)


def _override_rates_by_group(*, systems: list[AISystem]) -> dict[str, Any]:
    """Override rates per protected group from the bias app's de-identified counts, one table
    per system and attribute; `available` False if the bias app does not provide them."""
    try:
        from bias.models import AttributeSet
        from bias.selectors import override_rates_by_group
    except ImportError:
        return {"available": False, "tables": []}
    tables = []
    for system in systems:
        names: set[str] = set()
        for attributes in AttributeSet.objects.filter(system=system).values_list(
            "attributes", flat=True
        ):
            names.update(attributes or {})
        for name in sorted(names):
            rows = override_rates_by_group(system=system, attributes=[name])
            if any(row["reviewed"] for row in rows):
                tables.append({"system": system, "attribute": name, "rows": rows})
    return {"available": True, "tables": tables}
