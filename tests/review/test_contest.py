"""Contesting a decision from its subject page: the form, CSRF, the rate limit, the queue."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.urls import reverse

from review.models import ReviewAction, ReviewItem
from review.services import ContestError, contest_record, review_claim, review_confirm

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
