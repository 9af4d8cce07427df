"""The review permissions by name, and the AI systems each user's review work covers."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from audit.models import AISystem

PERM_REVIEW = "review.review_decision"
PERM_APPROVE = "review.approve_override"
PERM_ASSIGN = "review.assign_owner"
PERM_ALL_SYSTEMS = "review.review_all_systems"
PERM_OVERSIGHT = "review.view_oversight"
PERM_PUBLISH = "review.publish_policy"


def systems_in_scope(user: Any) -> QuerySet[AISystem] | None:
    """The AI systems whose records this user may see, or None for all of them.

    Every system with review.review_all_systems (compliance officers, administrators,
    superusers); anyone else, a reviewer included, only the systems whose review settings list
    them. Whatever the view permissions: they open pages, this decides which rows are on them.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return AISystem.objects.none()
    if user.has_perm(PERM_ALL_SYSTEMS):
        return None
    return AISystem.objects.filter(review_settings__reviewers=user)


def scoped(queryset: QuerySet, user: Any, system_path: str) -> QuerySet:
    """The rows of `queryset` whose system (at `system_path`) is in the user's scope."""
    systems = systems_in_scope(user)
    return queryset if systems is None else queryset.filter(**{f"{system_path}__in": systems})


def system_in_scope(user: Any, system: AISystem) -> bool:
    systems = systems_in_scope(user)
    return systems is None or systems.filter(pk=system.pk).exists()


def user_may_review(*, user: Any, system: AISystem, permission: str) -> bool:
    """Whether the user holds the permission for this system."""
    if user is None or not user.is_active or not user.has_perm(permission):
        return False
    return system_in_scope(user, system)
