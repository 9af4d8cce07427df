"""The staff app: roles synced after migrate, admin events recorded from auth and admin signals."""

from __future__ import annotations

from typing import Any

import structlog
from django.apps import AppConfig
from django.apps import apps as global_apps
from django.db.models.signals import post_migrate

log = structlog.get_logger(__name__)


def _roles_synced(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    from staff.roles import roles_sync

    # migrate hands over the migrated state, flush nothing; a migrate that unapplied auth's
    # migrations leaves no table for groups.
    try:
        kwargs.get("apps", global_apps).get_model("auth", "Group")
    except LookupError:
        return
    missing = {role: names for role, names in roles_sync(using=using).items() if names}
    if missing:
        log.warning("role_permissions_missing", missing=missing)


class StaffConfig(AppConfig):
    name = "staff"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from staff import receivers  # noqa: F401  (connects the signal receivers)

        post_migrate.connect(_roles_synced, sender=self, dispatch_uid="staff.roles_sync")
