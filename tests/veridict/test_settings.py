"""Production is the default: settings that refuse to start unsafe and pass `check --deploy`."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

MANAGE = Path(settings.BASE_DIR) / "manage.py"


def manage(tmp_path: Path, *args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    """`manage.py <args>` in a clean environment: only what a fresh shell would have, plus
    `variables`; no DJANGO_* or settings module inherited from the test run."""
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "VERIDICT_VAR_DIR": str(tmp_path / "var"),
        **variables,
    }
    return subprocess.run(
        [sys.executable, str(MANAGE), *args],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_without_debug_the_process_refuses_to_start_without_a_secret_key(tmp_path):
    result = manage(tmp_path, "check")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_debug_false_without_a_secret_key_also_refuses(tmp_path):
    result = manage(tmp_path, "check", DJANGO_DEBUG="false")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is not set" in result.stderr


def test_production_defaults_pass_check_deploy_with_a_secret_key(tmp_path):
    result = manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="veridict.example",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_a_development_instance_starts_with_nothing_but_debug_set(tmp_path):
    result = manage(tmp_path, "check", DJANGO_DEBUG="true")
    assert result.returncode == 0, result.stderr
    # ... and check --deploy names what a development instance must not take to production.
    deploy = manage(tmp_path, "check", "--deploy", DJANGO_DEBUG="true")
    assert "security.W009" in deploy.stderr + deploy.stdout  # the public development key
    assert "security.W018" in deploy.stderr + deploy.stdout  # DEBUG on


@pytest.mark.sqlite
@pytest.mark.django_db
def test_sqlite_commits_are_durable_before_they_are_acknowledged():
    """synchronous=FULL: in WAL mode, NORMAL survives a crashed process but not a power cut, and
    a 201 with its SET promises the entry exists."""
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 2  # FULL
