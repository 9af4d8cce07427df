"""The home page: the document form, accessible and with its scripts under SRI."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.django_db


def test_the_home_page_offers_a_file_and_a_digest_each_with_its_label(client):
    page = client.get("/").content.decode()
    assert '<label for="document-file">' in page and 'id="document-file"' in page
    assert '<label for="digest">' in page and 'id="digest"' in page
    assert 'action="/documents/"' in page  # works without JavaScript
    assert 'aria-live="polite"' in page
    assert '<a class="skip-link" href="#main">' in page and '<main id="main"' in page


def test_the_page_script_is_loaded_with_its_integrity_hash(client):
    page = client.get("/").content.decode()
    source = (Path(settings.BASE_DIR) / "static" / "portal" / "document.js").read_bytes()
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(source).digest()).decode()
    assert re.search(
        r'<script type="module" src="/static/portal/document.js" integrity="'
        + re.escape(integrity),
        page,
    )


@pytest.mark.parametrize("url", ["/", "/log/", "/keys/", "/keys/check-yourself"])
def test_pages_load_nothing_from_other_sites(client, url):
    page = client.get(url).content.decode()
    for attribute in re.findall(r'(?:src|href)="([^"]+)"', page):
        assert not re.match(r"^(https?:)?//", attribute), attribute
