"""The browser harness itself: Debian's Chromium renders a page of the live server."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def test_home_page_renders_in_chromium(page, live_server, screenshot) -> None:
    page.goto(live_server.url + "/")
    assert page.title()
    assert screenshot("home").exists()
