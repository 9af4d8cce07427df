"""The home page (the portal's document check) also shows the log's state."""

from __future__ import annotations

import pytest

from timestamping.services import entry_append

pytestmark = pytest.mark.django_db


def test_home_page_shows_the_log_size_and_what_is_pending(client, seal):
    assert "Nothing has been sealed yet" in client.get("/").content.decode()
    for n in range(3):
        entry_append(kind="test", envelope={"n": n})
    seal()
    entry_append(kind="test", envelope={"n": 3})
    page = client.get("/").content.decode()
    assert "<strong>3</strong> sealed entries in 1 batches" in page
    assert "1 more await the next seal" in page
