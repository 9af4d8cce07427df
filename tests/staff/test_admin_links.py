"""Every link of the admin opens for whoever it is shown to: a crawl of every admin page each role
can reach, over a log with one row of every kind, follows every admin link and finds no 403."""

from __future__ import annotations

import re
from collections import deque
from html import unescape
from urllib.parse import urlsplit

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import Erasure
from audit.services.decisions import outcome_record
from audit.services.documents import document_register
from audit.services.subjects import subject_erase
from review.models import ReviewSettings
from review.services import (
    decision_attribute,
    review_claim,
    review_confirm,
    review_item_open,
)
from review.services.policies import policy_set_publish

pytestmark = pytest.mark.django_db

HREF = re.compile(r'href="([^"]*)"')
# Pages that change something on GET, or leave: not crawled.
NOT_CRAWLED = re.compile(r"/logout/|/password_change/")
MOST_PAGES = 400


@pytest.fixture
def world(make_user, ai_system, record_decision, seal):
    """One system with a row of every kind the admin shows, each with its log entry, sealed."""
    reviewer = make_user("rita", role="reviewer")
    settings = ReviewSettings.objects.create(system=ai_system)
    settings.reviewers.add(reviewer)
    policy_set_publish(
        system=ai_system,
        rules=[
            {
                "name": "large",
                "if": {"field": "inputs.amount", "op": "gt", "value": 10**9},
                "then": "review",
            }
        ],
        by=None,
    )
    reviewed = record_decision(ai_system)
    item = review_item_open(decision=reviewed, by=None)
    review_claim(item=item, reviewer=reviewer)
    review_confirm(item=item, reviewer=reviewer, rationale="Fine.")
    decision_attribute(decision=reviewed, owner=reviewer, by=reviewer)
    outcome_record(decision=reviewed, actual={"approved": True}, observed_at=timezone.now())
    document_register(system=ai_system, sha256="ab" * 32, decision_ids=[str(reviewed.entry.uuid)])
    erased = record_decision(ai_system, subject_ref="someone-else")
    subject_erase(subject=erased.subject, reason=Erasure.Reason.REQUEST, note="asked")
    # Open and claimed, so that the queue (open items by default) leads to a claimed item.
    review_claim(
        item=review_item_open(decision=record_decision(ai_system), by=None), reviewer=reviewer
    )
    seal()
    return reviewer


def crawl(client: Client) -> tuple[list[str], list[tuple[str, str, int]]]:
    """Every admin page reachable from the index by GET; (pages, links that answered 4xx or
    5xx as (page, link, status))."""
    seen: set[str] = {"/admin/"}
    queue = deque([("", "/admin/")])
    pages: list[str] = []
    broken: list[tuple[str, str, int]] = []
    while queue and len(pages) < MOST_PAGES:
        source, url = queue.popleft()
        response = client.get(url)
        pages.append(url)
        if response.status_code >= 400:
            broken.append((source, url, response.status_code))
            continue
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        for href in HREF.findall(response.content.decode()):
            link = unescape(href)
            parts = urlsplit(link)
            if parts.scheme or not parts.path.startswith("/admin/") or NOT_CRAWLED.search(link):
                continue
            # One visit per path: filters and sort orders of a list open the same page.
            if parts.path not in seen:
                seen.add(parts.path)
                queue.append((url, link))
    return pages, broken


def test_a_reviewer_meets_no_admin_link_that_refuses_them(world):
    client = Client()
    client.force_login(world)
    pages, broken = crawl(client)
    assert not broken, "\n".join(f"{page} -> {link}: {status}" for page, link, status in broken)
    # The crawl reached the pages that used to link to entries.
    for page in (
        "/admin/audit/decision/",
        "/admin/review/reviewaction/",
        "/admin/review/policyset/",
    ):
        assert any(url.startswith(page) and url != page for url in pages), page
    assert not any(url.startswith("/admin/timestamping/entry/") for url in pages)


@pytest.mark.parametrize("role", ["compliance officer", "administrator"])
def test_staff_who_may_read_the_log_get_the_links_to_entries_and_every_link_opens(
    world, make_user, role
):
    user = make_user("carol", role=role)
    client = Client()
    client.force_login(user)
    pages, broken = crawl(client)
    assert not broken, "\n".join(f"{page} -> {link}: {status}" for page, link, status in broken)
    entry_pages = [
        url for url in pages if re.fullmatch(r"/admin/timestamping/entry/\d+/change/", url)
    ]
    # Decision, outcome, document, erasure, model version, review action, owner, policy: 8+.
    assert len(entry_pages) >= 8, entry_pages
