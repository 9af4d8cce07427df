"""Writes of the staff app: admin events, and staff accounts with a role."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, models, transaction
from django.http import HttpRequest

from staff.models import AdminEvent
from staff.roles import ROLES
from veridict.clients import client_ip

LOG_ENTRY_KINDS = {
    ADDITION: AdminEvent.Kind.ADDITION,
    CHANGE: AdminEvent.Kind.CHANGE,
    DELETION: AdminEvent.Kind.DELETION,
}


class UnknownRole(ValueError):
    """Not one of the roles staff/roles.py declares."""


def admin_event_record(
    *,
    kind: str,
    request: HttpRequest | None = None,
    user: AbstractBaseUser | None = None,
    username: str = "",
    target: models.Model | None = None,
    detail: dict[str, Any] | None = None,
) -> AdminEvent:
    """Records one admin event; `user` defaults to the request's authenticated user."""
    if user is None and request is not None and request.user.is_authenticated:
        user = request.user
    if user is not None and not username:
        username = user.get_username()
    return AdminEvent.objects.create(
        kind=kind,
        user=user,
        username=username[:150],
        ip_address=client_ip(request) if request is not None else None,
        path=request.path[:500] if request is not None else "",
        content_type=ContentType.objects.get_for_model(target) if target is not None else None,
        object_id=str(target.pk) if target is not None else "",
        object_repr=str(target)[:200] if target is not None else "",
        detail=detail or {},
    )


def admin_event_from_log_entry(*, log_entry: LogEntry) -> AdminEvent | None:
    """Copies an admin LogEntry (an addition, change or deletion) once; None if copied before."""
    message = log_entry.change_message
    try:
        change = json.loads(message) if message else []
    except ValueError:  # a free-text message, as older code wrote them
        change = message
    try:
        # A savepoint: a duplicate copy must not break the transaction that made the LogEntry.
        with transaction.atomic():
            return AdminEvent.objects.create(
                kind=LOG_ENTRY_KINDS.get(log_entry.action_flag, AdminEvent.Kind.CHANGE),
                user_id=log_entry.user_id,
                username=log_entry.user.get_username() if log_entry.user_id else "",
                content_type_id=log_entry.content_type_id,
                object_id=str(log_entry.object_id or "")[:64],
                object_repr=log_entry.object_repr[:200],
                detail={"change": change} if change else {},
                log_entry_id=log_entry.pk,
                created_at=log_entry.action_time,
            )
    except IntegrityError:
        return None


def log_entries_copy(*, after_id: int, user_id: int) -> int:
    """Copies this user's admin LogEntries newer than `after_id` not copied yet; how many.

    Deleting several objects at once writes its LogEntries with bulk_create, which sends no
    post_save signal: the delete action calls this afterwards.
    """
    copied = AdminEvent.objects.filter(log_entry_id__gt=after_id).values("log_entry_id")
    fresh = (
        LogEntry.objects.filter(pk__gt=after_id, user_id=user_id)
        .exclude(pk__in=copied)
        .select_related("user")
        .order_by("pk")
    )
    return sum(admin_event_from_log_entry(log_entry=log_entry) is not None for log_entry in fresh)


def staff_user_create(
    *, username: str, role: str, email: str = "", password: str | None = None
) -> AbstractBaseUser:
    """A staff account in one role's group; without a password it cannot log in until one is
    set (`manage.py changepassword`)."""
    if role not in ROLES:
        raise UnknownRole(f"role must be one of {', '.join(sorted(ROLES))}, not {role!r}")
    with transaction.atomic(durable=True):
        user = get_user_model().objects.create_user(
            username=username, email=email, password=password, is_staff=True
        )
        group, _ = Group.objects.get_or_create(name=role)
        user.groups.add(group)
    return user
