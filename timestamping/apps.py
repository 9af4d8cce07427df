"""App config of the log engine."""

import sqlite3

from django.apps import AppConfig
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections


class TimestampingConfig(AppConfig):
    name = "timestamping"
    verbose_name = "Verifiable log"

    def ready(self) -> None:
        checks.register(anchor_backends_check)
        checks.register(sqlite_version_check)


def anchor_backends_check(app_configs, **kwargs):  # type: ignore[no-untyped-def]
    """A malformed VERIDICT_ANCHORS fails `manage.py check` at start, not the first receipt."""
    from timestamping.anchor_backends import backends_configured

    try:
        backends_configured()
    except ImproperlyConfigured as exc:
        return [checks.Error(str(exc), hint="Fix VERIDICT_ANCHORS.", id="veridict.E001")]
    return []


# INSERT ... RETURNING (timestamping/services/entries.py, audit/services/subjects.py).
SQLITE_MINIMUM = (3, 35)


def sqlite_version_check(app_configs, **kwargs):  # type: ignore[no-untyped-def]
    """An SQLite library too old for INSERT ... RETURNING fails `manage.py check`, not the first
    decision recorded."""
    if sqlite3.sqlite_version_info >= SQLITE_MINIMUM:
        return []
    aliases = [alias for alias in connections if connections[alias].vendor == "sqlite"]
    return [
        checks.Error(
            f"database {alias!r} is SQLite {sqlite3.sqlite_version}; Veridict needs 3.35 or "
            "later (INSERT ... RETURNING)",
            hint="Use a Python built against a newer SQLite, or PostgreSQL (DATABASE_URL).",
            id="veridict.E002",
        )
        for alias in aliases
    ]
