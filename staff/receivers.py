"""Signal receivers that turn logins, logouts, lockouts and admin LogEntries into AdminEvents.

Signals, not services, because the events come from Django and django-axes; each receiver only
calls the service that records the event.
"""

from __future__ import annotations

from typing import Any

from axes.signals import user_locked_out
from django.contrib.admin.models import LogEntry
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.db.models.signals import post_save
from django.dispatch import receiver
from django.http import HttpRequest

from staff.models import AdminEvent
from staff.services import admin_event_from_log_entry, admin_event_record


@receiver(user_logged_in, dispatch_uid="staff.login")
def _logged_in(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    admin_event_record(kind=AdminEvent.Kind.LOGIN, request=request, user=user)


@receiver(user_logged_out, dispatch_uid="staff.logout")
def _logged_out(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    if user is not None:  # logging out without a session records nothing
        admin_event_record(kind=AdminEvent.Kind.LOGOUT, request=request, user=user)


@receiver(user_login_failed, dispatch_uid="staff.login_failed")
def _login_failed(
    sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
) -> None:
    # Django has already masked the password in `credentials`; only the username is kept.
    admin_event_record(
        kind=AdminEvent.Kind.LOGIN_FAILED,
        request=request,
        username=str(credentials.get("username") or ""),
    )


@receiver(user_locked_out, dispatch_uid="staff.locked_out")
def _locked_out(
    sender: Any, request: HttpRequest | None, username: str | None, **kwargs: Any
) -> None:
    admin_event_record(kind=AdminEvent.Kind.LOCKED_OUT, request=request, username=username or "")


@receiver(post_save, sender=LogEntry, dispatch_uid="staff.log_entry")
def _log_entry_saved(sender: Any, instance: LogEntry, created: bool, **kwargs: Any) -> None:
    if created:
        admin_event_from_log_entry(log_entry=instance)
