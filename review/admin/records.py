"""The review record, read-only: ledgered actions, owners, webhook deliveries."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from audit.admin import ClientIdSearchMixin, ReadOnlyAdmin, entry_admin_link
from review import selectors
from review.admin.common import json_block, user_name
from review.models import (
    DecisionOwner,
    ReviewAction,
    WebhookDelivery,
)
from review.permissions import scoped
from timestamping.admin import LedgerAdmin
from veridict.admin_links import admin_link


@admin.register(ReviewAction)
class ReviewActionAdmin(ClientIdSearchMixin, LedgerAdmin):
    list_display = ("created_at", "kind", "decision", "actor_pseudonym")
    list_filter = ("kind",)
    list_select_related = ("decision__system",)
    decision_path = "decision__"
    search_fields = ("=actor_pseudonym",)
    fields = readonly_fields = (
        "decision",
        "item",
        "kind",
        "actor_link",
        "actor_pseudonym",
        "output_text",
        "text",
        "created_at",
        "entry_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewAction]:
        return scoped(super().get_queryset(request), request.user, "decision__system")

    @admin.display(description="actor")
    def actor_link(self, action: ReviewAction) -> str:
        return admin_link(action.actor)

    @admin.display(description="new outcome")
    def output_text(self, action: ReviewAction) -> str:
        return json_block(action.output) if action.output is not None else "-"

    @admin.display(description="rationale or statement")
    def text(self, action: ReviewAction) -> str:
        text = selectors.review_action_text(action)
        if text is None:
            return "-" if action.sealed_text is None else "erased with the subject's data"
        return format_html('<div class="review-text">{}</div>', text)

    @admin.display(description="entry")
    def entry_link(self, action: ReviewAction) -> str:
        return entry_admin_link(action.entry)


@admin.register(DecisionOwner)
class DecisionOwnerAdmin(ReadOnlyAdmin):
    list_display = ("decision", "who", "source", "assigned_by", "created_at")
    list_filter = ("source",)
    list_select_related = ("decision__system", "user", "assigned_by")
    fields = readonly_fields = (
        "decision",
        "user_link",
        "name",
        "source",
        "assigned_by_link",
        "created_at",
        "entry_link",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[DecisionOwner]:
        return scoped(super().get_queryset(request), request.user, "decision__system")

    @admin.display(description="user")
    def user_link(self, owner: DecisionOwner) -> str:
        return admin_link(owner.user)

    @admin.display(description="assigned by")
    def assigned_by_link(self, owner: DecisionOwner) -> str:
        return admin_link(owner.assigned_by)

    @admin.display(description="owner")
    def who(self, owner: DecisionOwner) -> str:
        return user_name(owner.user) if owner.user_id else owner.name

    @admin.display(description="entry")
    def entry_link(self, owner: DecisionOwner) -> str:
        return entry_admin_link(owner.entry)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "system", "status", "attempts", "last_status_code", "url")
    list_filter = ("status", ("system", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("system",)
    fields = readonly_fields = (
        "uuid",
        "system",
        "action",
        "url",
        "status",
        "attempts",
        "last_status_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
        "body_text",
    )

    @admin.display(description="body")
    def body_text(self, delivery: WebhookDelivery) -> str:
        return format_html("<pre>{}</pre>", bytes(delivery.body).decode(errors="replace"))
