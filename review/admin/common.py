"""What the review admin modules share: permission names, the system scope, display helpers."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html

from audit.models import AISystem, Decision

PERM_REVIEW = "review.review_decision"
PERM_APPROVE = "review.approve_override"
PERM_ASSIGN = "review.assign_owner"
PERM_ALL_SYSTEMS = "review.review_all_systems"
PERM_OVERSIGHT = "review.view_oversight"
PERM_PUBLISH = "review.publish_policy"


def systems_in_scope(user: Any) -> QuerySet[AISystem] | None:
    """The AI systems whose decisions this user works on, or None for all of them.

    A reviewer (review_decision without review_all_systems) sees the systems assigned to them;
    everyone else with the view permissions sees every system.
    """
    if not user.has_perm(PERM_REVIEW) or user.has_perm(PERM_ALL_SYSTEMS):
        return None
    return AISystem.objects.filter(review_settings__reviewers=user)


def scoped(queryset: QuerySet, user: Any, system_path: str) -> QuerySet:
    systems = systems_in_scope(user)
    return queryset if systems is None else queryset.filter(**{f"{system_path}__in": systems})


def json_block(value: Any) -> str:
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True))


def json_text(value: Any) -> str | None:
    return None if value is None else json.dumps(value, indent=2, ensure_ascii=False)


def decision_link(decision: Decision) -> str:
    url = reverse("admin:audit_decision_change", args=[decision.pk])
    return format_html('<a href="{}">{}</a>', url, decision.client_decision_id)


def user_name(user: Any) -> str:
    return user.get_username() if user is not None else "-"
