"""Browser tests: Debian's Chromium driven by Playwright against a live Django server.

Never a downloaded browser: the tests use /usr/bin/chromium (Debian's `chromium`), and a machine
without it skips them on a laptop and fails them under .ci/run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import missing

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make
# between page actions are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path(os.environ.get("VERIDICT_CHROMIUM", "/usr/bin/chromium"))
ARTEFACTS = Path(__file__).resolve().parents[2] / "var" / "e2e-artefacts"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        missing(f"Chromium is not installed at {CHROMIUM} (Debian package chromium)")
    # The machine's network is closed: without these flags Chromium keeps dialling out.
    return {
        **browser_type_launch_args,
        "executable_path": str(CHROMIUM),
        "args": [
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    }


@pytest.fixture
def screenshot(page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Saves a full-page screenshot under var/e2e-artefacts/<test name>-<label>.png."""

    def take(label: str) -> Path:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTEFACTS / f"{request.node.name}-{label}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
