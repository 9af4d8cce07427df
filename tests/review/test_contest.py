"""Contesting a decision from its subject page: the form, CSRF, the rate limit, the queue."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from review.models import ReviewAction, ReviewItem
from review.services import (
    ContestError,
    contest_record,
    review_approve,
    review_claim,
    review_confirm,
    review_escalate,
    review_item_open,
    review_override,
)

pytestmark = pytest.mark.django_db

STATEMENT = "My income was 52,000, not 42,000: the payslip was misread."


def page_url(decision) -> str:
    return reverse("decision-subject", kwargs={"token": decision.subject_token})


def csrf_client(url: str) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.get(url)
    return client, client.cookies["csrftoken"].value


def test_the_page_shows_the_decision_its_owners_role_and_the_contest_form(
    record, alice, cache_table
):
    decision = record(owner="alice")
    from django.contrib.auth.models import Group

    alice.groups.add(Group.objects.get_or_create(name="reviewer")[0])
    html = Client().get(page_url(decision)).content.decode()
    assert "Accountable person" in html and "Reviewer at" in html
    assert "alice" not in html  # a role, never a name
    assert 'name="statement"' in html and "csrfmiddlewaretoken" in html
    assert "No person has been asked to review this decision yet." in html


def test_a_contest_from_the_page_reaches_the_queue_and_the_page_shows_it(
    record, alice, cache_table
):
    decision = record()
    url = page_url(decision)
    client, token = csrf_client(url)
    response = client.post(url, {"statement": STATEMENT, "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"].endswith("?contested=1#contest")
    item = ReviewItem.objects.get(decision=decision)
    assert (item.reason, item.status) == ("contest", "open")
    action = ReviewAction.objects.get(decision=decision)
    assert (action.kind, action.actor_pseudonym, action.entry.kind) == (
        "contest",
        "subject",
        "contest",
    )
    canonical = bytes(action.entry.canonical).decode()
    assert "payslip" not in canonical
    assert json.loads(canonical)["body"]["decision"] == str(decision.entry.uuid)
    html = client.get(response["Location"]).content.decode()
    assert "your contest was recorded" in html
    assert "You contested this decision" in html and "waiting for a reviewer" in html
    assert 'name="statement"' not in html  # no second contest while one is pending
    review_claim(item=item, reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="Checked the payslip: 42,000.")
    html = client.get(url).content.decode()
    assert "reviewed this decision" in html and "confirmed it" in html
    assert "was reviewed: see above" in html
    assert "Checked the payslip" not in html  # the reviewer's rationale stays with the operator


def test_a_contest_without_the_csrf_token_is_refused(record, cache_table):
    decision = record()
    client, _ = csrf_client(page_url(decision))
    response = client.post(page_url(decision), {"statement": STATEMENT})
    assert response.status_code == 403
    assert not ReviewItem.objects.exists()


def test_an_empty_contest_is_refused_on_the_page(record, cache_table):
    decision = record()
    response = Client().post(page_url(decision), {"statement": "  "})
    assert response.status_code == 400
    assert "a written statement is required" in response.content.decode()
    assert not ReviewItem.objects.exists()


def test_contests_are_rate_limited_per_decision(record, cache_table, settings):
    settings.CONTEST_RATE_PER_DECISION = "2/h"
    decision = record()
    client = Client()
    for _ in range(2):
        client.post(page_url(decision), {"statement": ""})  # refused, but counted
    response = client.post(page_url(decision), {"statement": STATEMENT})
    assert response.status_code == 429 and response["Retry-After"]
    assert not ReviewItem.objects.exists()
    # Another decision's page is not limited by this one's count.
    assert client.post(page_url(record()), {"statement": STATEMENT}).status_code == 302


def test_contests_are_rate_limited_per_address(record, cache_table, settings):
    settings.CONTEST_RATE_PER_ADDRESS = "1/h"
    client = Client(REMOTE_ADDR="203.0.113.9")
    assert client.post(page_url(record()), {"statement": STATEMENT}).status_code == 302
    assert client.post(page_url(record()), {"statement": STATEMENT}).status_code == 429
    other = Client(REMOTE_ADDR="203.0.113.10")
    assert other.post(page_url(record()), {"statement": STATEMENT}).status_code == 302


def test_a_contest_reopens_a_closed_review(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")
    contest_record(decision=item.decision, statement=STATEMENT)
    item.refresh_from_db()
    assert (item.status, item.reason, item.result) == ("open", "contest", "confirmed")
    with pytest.raises(ContestError):
        contest_record(decision=item.decision, statement="again")


def test_an_erased_subjects_decision_cannot_be_contested(record, cache_table):
    from audit.services.subjects import subject_erase
    from review.services import SubjectErased

    decision = record()
    subject_erase(subject=decision.subject, reason="request")
    decision.refresh_from_db()
    with pytest.raises(SubjectErased):
        contest_record(decision=decision, statement=STATEMENT)
    html = Client().get(page_url(decision)).content.decode()
    assert "can no longer be contested" in html


def test_a_contest_is_recorded_when_the_rate_limit_cache_is_down(record, settings):
    """Redis unreachable (a closed port): the limiter fails open, the contest goes through."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }
    from django.core.cache import cache
    from redis.exceptions import ConnectionError as RedisConnectionError

    with pytest.raises(RedisConnectionError):  # really down, and not the builtin error
        cache.get("probe")
    decision = record()
    response = Client().post(page_url(decision), {"statement": STATEMENT})
    assert response.status_code == 302
    assert ReviewItem.objects.get(decision=decision).reason == "contest"


def test_behind_a_trusted_proxy_contests_are_counted_per_forwarded_address(
    record, cache_table, settings
):
    settings.CONTEST_RATE_PER_ADDRESS = "1/h"
    settings.TRUSTED_PROXY_COUNT = 1
    proxy = {"REMOTE_ADDR": "10.0.0.2"}
    first = Client(HTTP_X_FORWARDED_FOR="203.0.113.9", **proxy)
    second = Client(HTTP_X_FORWARDED_FOR="203.0.113.10", **proxy)
    assert first.post(page_url(record()), {"statement": STATEMENT}).status_code == 302
    assert second.post(page_url(record()), {"statement": STATEMENT}).status_code == 302
    assert first.post(page_url(record()), {"statement": STATEMENT}).status_code == 429


def test_sending_a_contested_decision_to_review_keeps_the_contest(record, alice, cache_table):
    decision = record()
    contest_record(decision=decision, statement=STATEMENT)
    item = review_item_open(decision=decision, by=alice)
    assert (item.reason, item.status) == ("contest", "open")
    assert "You contested this decision" in Client().get(page_url(decision)).content.decode()
    with pytest.raises(ContestError):
        contest_record(decision=decision, statement="again")


def test_a_reopened_review_starts_from_scratch(queued, alice, bob, settings_of):
    settings_of.four_eyes = True
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    review_escalate(item=item, reviewer=alice, rationale="not sure")
    item = review_claim(item=item, reviewer=bob)
    review_override(item=item, reviewer=bob, rationale="misread", output={"label": "approve"})
    review_approve(item=item, approver=alice, rationale="agreed")
    item.refresh_from_db()
    assert item.status == "closed" and item.escalated_by == alice and item.proposed_by == bob
    ReviewItem.objects.filter(pk=item.pk).update(time_spent_seconds=90)
    contest_record(decision=item.decision, statement=STATEMENT)
    item.refresh_from_db()
    assert (item.status, item.reason) == ("open", "contest")
    assert (item.escalated_by, item.proposed_by, item.proposed_output) == (None, None, None)
    assert (item.claimed_by, item.time_spent_seconds, item.closed_at) == (None, 0, None)
    # The outcome that holds stays the last final review's until the next one.
    assert (item.result, item.final_output) == ("overridden", {"label": "approve"})
    # Whoever escalated the last review may take this one.
    assert review_claim(item=item, reviewer=alice).claimed_by == alice


def test_the_subject_page_links_receipts_its_holder_can_open(queued, alice, cache_table):
    """A private system's receipts 404 at the public URL; the page's own URLs serve them, for
    this decision's entries only."""
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")
    decision = item.decision
    assert not decision.system.is_public
    contest_record(decision=decision, statement=STATEMENT)
    entries = [
        decision.entry.uuid,
        *ReviewAction.objects.filter(decision=decision).values_list("entry__uuid", flat=True),
    ]
    assert len(entries) == 3
    client = Client()
    html = client.get(page_url(decision)).content.decode()
    for uuid in entries:
        assert client.get(f"/api/v1/entries/{uuid}/receipt").status_code == 404
        url = reverse(
            "decision-subject-receipt",
            kwargs={"token": decision.subject_token, "entry_id": uuid},
        )
        assert url in html
        response = client.get(url)
        assert response.status_code == 200, uuid
        assert response.json()["entry"]["id"] == str(uuid)
        assert response["Cache-Control"] == "private, no-store"
    other = queued().decision
    foreign = reverse(
        "decision-subject-receipt",
        kwargs={"token": decision.subject_token, "entry_id": other.entry.uuid},
    )
    assert client.get(foreign).status_code == 404
    wrong_token = reverse(
        "decision-subject-receipt", kwargs={"token": "nope", "entry_id": decision.entry.uuid}
    )
    assert client.get(wrong_token).status_code == 404
