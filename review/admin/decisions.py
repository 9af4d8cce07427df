"""Decisions in the admin: accountable owner, review chain, unattributed decisions."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join

from audit.admin import ClientIdSearchMixin, DecisionAdmin, ReadOnlyAdmin, decision_label
from audit.models import Decision
from review import selectors
from review.admin.common import decision_link
from review.models import ReviewItem
from review.permissions import PERM_ASSIGN, PERM_REVIEW, scoped
from review.services import (
    ReviewError,
    decision_attribute,
    review_item_open,
)
from staff.models import AdminEvent, UnattributedDecision
from staff.services import admin_event_record
from veridict.admin_links import admin_link


class OwnerForm(forms.Form):
    owner = forms.ModelChoiceField(
        queryset=get_user_model()
        .objects.filter(is_active=True, is_staff=True)
        .order_by("username"),
        help_text="The person accountable for these decisions.",
    )


@admin.action(permissions=["assign_owner"], description="Assign an accountable owner")
def assign_owner(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Decision]
) -> HttpResponse | None:
    form = OwnerForm(request.POST if request.POST.get("post") else None)
    if form.is_valid():
        owner, assigned, refused = form.cleaned_data["owner"], 0, []
        for decision in queryset.select_related("system", "entry", "subject"):
            try:
                attribution = decision_attribute(decision=decision, owner=owner, by=request.user)
            except ReviewError as exc:
                refused.append(f"{decision_label(decision)}: {exc}")
                continue
            assigned += 1
            admin_event_record(
                kind=AdminEvent.Kind.REVIEW,
                request=request,
                target=decision,
                detail={
                    "action": "assign_owner",
                    "owner": owner.get_username(),
                    "attribution_entry": str(attribution.entry.uuid),
                },
            )
        if assigned:
            modeladmin.message_user(
                request,
                f"{owner.get_username()} is now accountable for {assigned} "
                f"decision{'s' if assigned != 1 else ''}; each attribution is an entry of the log.",
                messages.SUCCESS,
            )
        for reason in refused:
            modeladmin.message_user(request, reason, messages.ERROR)
        return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "title": "Assign an accountable owner",
        "decisions": [
            (decision_label(decision), decision)
            for decision in queryset.select_related("system", "subject", "entry")[:50]
        ],
        "decision_count": queryset.count(),
        "form": form,
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/review/assign_owner.html", context)


class AssignOwnerMixin:
    def has_assign_owner_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_ASSIGN)


admin.site.unregister(Decision)


@admin.register(Decision)
class ReviewedDecisionAdmin(AssignOwnerMixin, DecisionAdmin):
    """audit's decision page, plus the accountable owner and the chain of review entries."""

    fields = readonly_fields = (
        *DecisionAdmin.fields,
        "accountable_owner",
        "review_status",
        "review_chain_table",
    )
    actions = [*DecisionAdmin.actions, "send_to_review", assign_owner]

    class Media:
        css = {"all": ("staff/admin.css",)}

    def has_review_decision_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PERM_REVIEW)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Decision]:
        return scoped(super().get_queryset(request), request.user, "system")

    @admin.display(description="accountable owner")
    def accountable_owner(self, decision: Decision) -> str:
        owner = selectors.decision_owner(decision=decision)
        if owner is None:
            return "nobody yet (see unattributed decisions)"
        who = owner.user.get_username() if owner.user is not None else owner.name
        return f"{who} ({owner.get_source_display()})"

    @admin.display(description="review")
    def review_status(self, decision: Decision) -> str:
        item = ReviewItem.objects.filter(decision=decision).first()
        if item is None:
            return "not in the review queue"
        result = f", {item.get_result_display()}" if item.result else ""
        return admin_link(item, f"{item.get_status_display()}{result}")

    @admin.display(description="review entries (oldest first)")
    def review_chain_table(self, decision: Decision) -> str:
        return chain_table(selectors.review_chain(decision=decision, verify=True))

    @admin.action(permissions=["review_decision"], description="Send to the review queue")
    def send_to_review(self, request: HttpRequest, queryset: QuerySet[Decision]) -> None:
        sent, refused = 0, []
        for decision in queryset.select_related("system"):
            try:
                item = review_item_open(decision=decision, by=request.user)
            except ReviewError as exc:
                refused.append(f"{decision_label(decision)}: {exc}")
                continue
            sent += 1
            admin_event_record(
                kind=AdminEvent.Kind.REVIEW,
                request=request,
                target=item,
                detail={"action": "open", "decision_entry": str(decision.entry.uuid)},
            )
        if sent:
            self.message_user(request, f"Sent {sent} to the review queue.", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.ERROR)


def chain_table(chain: list[dict[str, Any]]) -> str:
    if not chain:
        return "none yet"
    verdicts = {True: "verifies", False: "DOES NOT VERIFY", None: "awaiting sealing"}
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>"
        '<td class="review-verify-{}">{}</td><td><a href="{}">receipt</a></td></tr>',
        (
            (
                link["kind"],
                f"{link['created_at']:%Y-%m-%d %H:%M:%S} UTC"
                if hasattr(link["created_at"], "strftime")
                else link["created_at"],
                link["actor"],
                link["status"],
                str(link["verified"]).lower(),
                # The failed step, when there is one: what a verifier would report.
                verdicts[link["verified"]]
                + (f" ({link['detail']})" if link["verified"] is False else ""),
                link["receipt_url"],
            )
            for link in chain
        ),
    )
    return format_html(
        '<table class="review-chain"><thead><tr><th scope="col">kind</th>'
        '<th scope="col">when</th><th scope="col">by (pseudonym)</th>'
        '<th scope="col">entry</th><th scope="col">receipt check</th><th scope="col"></th>'
        "</tr></thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(UnattributedDecision)
class UnattributedDecisionAdmin(AssignOwnerMixin, ClientIdSearchMixin, ReadOnlyAdmin):
    list_display = ("decision_column", "system", "model_version", "received_at")
    list_display_links = None
    list_filter = (("system", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("system", "model_version", "subject", "entry")
    actions = [assign_owner]

    def get_queryset(self, request: HttpRequest) -> QuerySet[UnattributedDecision]:
        unattributed = selectors.decisions_unattributed(user=request.user).values("pk")
        queryset = super().get_queryset(request).filter(pk__in=unattributed)
        return scoped(queryset, request.user, "system")

    @admin.display(description="decision", ordering="entry__seq")
    def decision_column(self, decision: Decision) -> str:
        return decision_link(decision)
