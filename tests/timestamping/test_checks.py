"""`manage.py check` refuses an SQLite too old for INSERT ... RETURNING."""

from __future__ import annotations

import pytest
from django.core import checks

from timestamping import apps


def errors_with_sqlite(monkeypatch: pytest.MonkeyPatch, version: tuple[int, int, int]) -> list:
    monkeypatch.setattr(apps.sqlite3, "sqlite_version_info", version)
    return [message for message in checks.run_checks() if message.id == "veridict.E002"]


@pytest.mark.sqlite
def test_an_sqlite_before_3_35_is_an_error(monkeypatch):
    errors = errors_with_sqlite(monkeypatch, (3, 34, 1))
    assert len(errors) == 1
    assert errors[0].level == checks.ERROR
    assert "3.35" in errors[0].msg and "'default'" in errors[0].msg


@pytest.mark.sqlite
def test_sqlite_3_35_and_later_pass(monkeypatch):
    assert errors_with_sqlite(monkeypatch, (3, 35, 0)) == []
    assert errors_with_sqlite(monkeypatch, (3, 45, 1)) == []


@pytest.mark.postgres
def test_an_old_sqlite_library_does_not_matter_on_postgresql(monkeypatch):
    assert errors_with_sqlite(monkeypatch, (3, 7, 17)) == []
