"""Review settings per AI system, and publishing policy sets through the service."""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from audit.admin import entry_admin_link
from audit.models import AISystem
from review.admin.common import id_param, json_block
from review.models import (
    PolicySet,
    ReviewSettings,
)
from review.permissions import PERM_PUBLISH, scoped
from review.services import (
    PolicyError,
    policy_set_publish,
    webhook_secret,
)
from staff.models import AdminEvent
from staff.services import admin_event_record
from timestamping.admin import LedgerAdmin
from veridict.admin_links import PermittedLinksAdmin, admin_link, viewer_may
from veridict.outbound import DestinationRefused, destination_check


class ReviewSettingsForm(forms.ModelForm):
    webhook_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text="Receives each final review as signed JSON (HMAC-SHA256).",
    )

    class Meta:
        model = ReviewSettings
        fields = (
            "system",
            "reviewers",
            "default_owner",
            "sampling_rate",
            "low_confidence_below",
            "four_eyes",
            "review_deadline_hours",
            "webhook_url",
        )

    def clean_webhook_url(self) -> str:
        url: str = self.cleaned_data["webhook_url"]
        if url:
            # Checked again at each delivery (the name may resolve elsewhere by then).
            try:
                destination_check(url)
            except DestinationRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return url


@admin.register(ReviewSettings)
class ReviewSettingsAdmin(PermittedLinksAdmin):
    form = ReviewSettingsForm
    list_display = ("system", "four_eyes", "sampling_rate", "review_deadline_hours", "policy")
    list_select_related = ("system", "current_policy")
    filter_horizontal = ("reviewers",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewSettings]:
        return scoped(super().get_queryset(request), request.user, "system")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        fields = [*ReviewSettingsForm.Meta.fields, "policy"]
        if obj is not None and self.has_change_permission(request, obj):
            fields.append("webhook_secret_text")
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields: tuple[str, ...] = ("policy", "webhook_secret_text")
        return (*fields, "system") if obj is not None else fields

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "reviewers":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="current policy")
    def policy(self, review_settings: ReviewSettings) -> str:
        policy = review_settings.current_policy
        current = "none" if policy is None else admin_link(policy, f"version {policy.version}")
        if not viewer_may(PERM_PUBLISH):
            return current
        return format_html(
            '{} (<a href="{}?system={}">publish {}</a>)',
            current,
            reverse("admin:review_policyset_publish"),
            review_settings.system_id,
            "one" if policy is None else "a new version",
        )

    @admin.display(description="webhook HMAC secret")
    def webhook_secret_text(self, review_settings: ReviewSettings) -> str:
        return format_html(
            "<code>{}</code><br>Give it to the system's operator: each webhook request carries "
            "<code>Veridict-Signature: t=&lt;unix time&gt;,v1=&lt;hex HMAC-SHA256 of "
            "&quot;t.body&quot;&gt;</code>. Derived from the master key, never stored.",
            webhook_secret(system=review_settings.system),
        )


class PolicyPublishForm(forms.Form):
    system = forms.ModelChoiceField(queryset=AISystem.objects.order_by("name"))
    rules = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 16, "cols": 90, "spellcheck": "false"}),
        help_text='A JSON list of rules, e.g. [{"name": "large loans", "if": {"field": '
        '"inputs.amount", "op": "gt", "value": 50000}, "then": "review"}]. Publishing appends '
        "the new version to the log; decisions received afterwards are checked against it.",
    )

    def clean_rules(self) -> Any:
        try:
            return json.loads(self.cleaned_data["rules"])
        except ValueError as exc:
            raise forms.ValidationError(f"not JSON: {exc}") from exc


@admin.register(PolicySet)
class PolicySetAdmin(LedgerAdmin):
    list_display = ("system", "version", "published_by", "published_at")
    list_filter = (("system", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("system", "published_by")
    fields = readonly_fields = (
        "system",
        "version",
        "rules_text",
        "published_by_link",
        "published_at",
        "entry_link",
    )
    change_list_template = "admin/review/policyset/change_list.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PolicySet]:
        return scoped(super().get_queryset(request), request.user, "system")

    @admin.display(description="published by")
    def published_by_link(self, policy: PolicySet) -> str:
        return admin_link(policy.published_by)

    @admin.display(description="rules")
    def rules_text(self, policy: PolicySet) -> str:
        return json_block(policy.rules)

    @admin.display(description="entry")
    def entry_link(self, policy: PolicySet) -> str:
        return entry_admin_link(policy.entry)

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**(extra_context or {}), "may_publish": request.user.has_perm(PERM_PUBLISH)}
        return super().changelist_view(request, context)

    def get_urls(self) -> list:
        return [
            path(
                "publish/",
                self.admin_site.admin_view(self.publish_view),
                name="review_policyset_publish",
            ),
            *super().get_urls(),
        ]

    def publish_view(self, request: HttpRequest) -> HttpResponse:
        if not request.user.has_perm(PERM_PUBLISH):
            raise PermissionDenied
        if request.method == "POST":
            form = PolicyPublishForm(request.POST)
            if form.is_valid():
                try:
                    policy = policy_set_publish(
                        system=form.cleaned_data["system"],
                        rules=form.cleaned_data["rules"],
                        by=request.user,
                    )
                except PolicyError as exc:
                    form.add_error("rules", str(exc))
                else:
                    admin_event_record(
                        kind=AdminEvent.Kind.REVIEW,
                        request=request,
                        target=policy,
                        detail={"action": "publish_policy", "entry": str(policy.entry.uuid)},
                    )
                    messages.success(
                        request,
                        f"Published {policy}: it applies to decisions received from now on.",
                    )
                    return HttpResponseRedirect(
                        reverse("admin:review_policyset_change", args=[policy.pk])
                    )
        else:
            system_id = id_param(request.GET.get("system"))
            system = AISystem.objects.filter(pk=system_id).first() if system_id else None
            current = (
                PolicySet.objects.filter(system=system).order_by("-version").first()
                if system
                else None
            )
            form = PolicyPublishForm(
                initial={
                    "system": system,
                    "rules": json.dumps(current.rules if current else [], indent=2),
                }
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Publish a policy set",
            "form": form,
        }
        return TemplateResponse(request, "admin/review/policyset/publish.html", context)
