"""The review pages of the admin: queue order, the item page, time spent, the decision's review
chain with its verification, unattributed decisions and oversight analytics."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from review.admin.queue import STARTED_SALT
from review.models import ReviewItem, ReviewSettings
from review.services import (
    review_claim,
    review_confirm,
    review_item_open,
    review_override,
)
from staff.models import AdminEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def reviewer(make_user, ai_system):
    user = make_user("rita", role="reviewer")
    ReviewSettings.objects.create(system=ai_system).reviewers.add(user)
    return user


@pytest.fixture
def reviewer_client(reviewer) -> Client:
    client = Client()
    client.force_login(reviewer)
    return client


def queue_of(client: Client, query: str = "") -> list[ReviewItem]:
    return list(client.get(f"/admin/review/reviewitem/{query}").context["cl"].result_list)


def test_the_queue_lists_overdue_items_first_and_marks_them(
    reviewer_client, record_decision, ai_system
) -> None:
    soon, overdue, later = (
        review_item_open(decision=record_decision(ai_system), by=None) for _ in range(3)
    )
    now = timezone.now()
    ReviewItem.objects.filter(pk=soon.pk).update(due_at=now + timedelta(hours=1))
    ReviewItem.objects.filter(pk=overdue.pk).update(due_at=now - timedelta(hours=5))
    ReviewItem.objects.filter(pk=later.pk).update(due_at=now + timedelta(hours=9))

    page = reviewer_client.get("/admin/review/reviewitem/")

    assert [item.pk for item in page.context["cl"].result_list] == [overdue.pk, soon.pk, later.pk]
    assert page.content.decode().count('class="review-overdue"') == 1
    assert [i.pk for i in queue_of(reviewer_client, "?overdue=yes")] == [overdue.pk]


def test_the_queue_hides_closed_items_unless_asked(
    reviewer, reviewer_client, record_decision, ai_system
) -> None:
    done = review_item_open(decision=record_decision(ai_system), by=None)
    review_claim(item=done, reviewer=reviewer)
    review_confirm(item=done, reviewer=reviewer, rationale="Fine.")
    waiting = review_item_open(decision=record_decision(ai_system), by=None)

    assert queue_of(reviewer_client) == [waiting]
    assert [i.pk for i in queue_of(reviewer_client, "?status=closed")] == [done.pk]
    assert {i.pk for i in queue_of(reviewer_client, "?status=all")} == {done.pk, waiting.pk}
    assert queue_of(reviewer_client, "?reason=manual&status=open") == [waiting]


def test_the_item_page_shows_inputs_and_explanation_but_not_protected_attributes(
    reviewer, reviewer_client, record_decision, ai_system
) -> None:
    item = review_item_open(decision=record_decision(ai_system), by=None)
    page = reviewer_client.get(f"/admin/review/reviewitem/{item.pk}/change/").content.decode()
    assert "debt-to-income ratio" in page and "42000" in page
    assert "female" not in page and "30-39" not in page
    assert "Claim this review" in page and "Override" not in page

    review_claim(item=item, reviewer=reviewer)
    page = reviewer_client.get(f"/admin/review/reviewitem/{item.pk}/change/").content.decode()
    assert "Claim this review" not in page
    assert all(button in page for button in ('name="confirm"', 'name="override"', "Escalate"))


def test_time_spent_counts_from_when_the_page_was_opened_and_ignores_forged_times(
    reviewer, reviewer_client, record_decision, ai_system
) -> None:
    first, second = (
        review_item_open(decision=record_decision(ai_system), by=None) for _ in range(2)
    )
    for item in (first, second):
        review_claim(item=item, reviewer=reviewer)
    opened = signing.dumps({"item": first.pk, "at": time.time() - 300}, salt=STARTED_SALT)
    forged = signing.dumps({"item": second.pk, "at": time.time() - 300}, salt="another salt")

    for item, started in ((first, opened), (second, forged)):
        reviewer_client.post(
            reverse("admin:review_act", args=[item.pk, "confirm"]),
            {"rationale": "Checked the income.", "started": started},
        )
        item.refresh_from_db()
        assert item.status == ReviewItem.Status.CLOSED

    assert 300 <= first.time_spent_seconds < 330
    assert second.time_spent_seconds < 30  # counted from the claim, moments ago


def test_a_token_of_another_item_does_not_count(
    reviewer, reviewer_client, record_decision, ai_system
) -> None:
    item = review_item_open(decision=record_decision(ai_system), by=None)
    review_claim(item=item, reviewer=reviewer)
    other = signing.dumps({"item": item.pk + 1000, "at": time.time() - 900}, salt=STARTED_SALT)
    reviewer_client.post(
        reverse("admin:review_act", args=[item.pk, "confirm"]),
        {"rationale": "Checked.", "started": other},
    )
    item.refresh_from_db()
    assert item.time_spent_seconds < 30


def test_an_override_with_no_new_outcome_is_refused_by_the_form(
    reviewer, reviewer_client, record_decision, ai_system
) -> None:
    item = review_item_open(decision=record_decision(ai_system), by=None)
    review_claim(item=item, reviewer=reviewer)
    response = reviewer_client.post(
        reverse("admin:review_act", args=[item.pk, "override"]), {"rationale": "Wrong."}
    )
    item.refresh_from_db()
    assert item.status == ReviewItem.Status.CLAIMED
    messages = [str(m) for m in reviewer_client.get(response["Location"]).context["messages"]]
    assert "Give the new outcome: a label, a score or a value." in messages


def test_an_override_from_the_item_page_records_the_new_outcome_and_an_admin_event(
    reviewer, reviewer_client, record_decision, ai_system
) -> None:
    item = review_item_open(decision=record_decision(ai_system), by=None)
    review_claim(item=item, reviewer=reviewer)
    reviewer_client.post(
        reverse("admin:review_act", args=[item.pk, "override"]),
        {"rationale": "Income misread.", "label": "approve", "score": "0.71", "value": "15000"},
    )
    item.refresh_from_db()
    assert (item.status, item.result) == (ReviewItem.Status.CLOSED, "overridden")
    assert item.final_output == {"label": "approve", "score": 0.71, "value": 15000}
    event = AdminEvent.objects.get(kind=AdminEvent.Kind.REVIEW)
    assert (event.user, event.object_id, event.detail["action"]) == (
        reviewer,
        str(item.pk),
        "override",
    )
    assert event.detail["decision_entry"] == str(item.decision.entry.uuid)


def test_the_decision_page_shows_its_owner_and_a_review_chain_that_verifies_once_sealed(
    reviewer, reviewer_client, record_decision, ai_system, seal
) -> None:
    decision = record_decision(ai_system)
    item = review_item_open(decision=decision, by=None)
    review_claim(item=item, reviewer=reviewer)
    review_override(item=item, reviewer=reviewer, rationale="Misread.", output={"label": "approve"})
    url = f"/admin/audit/decision/{decision.pk}/change/"

    pending = reviewer_client.get(url).content.decode()
    assert "officer-17 (named in the record)" in pending
    assert "awaiting sealing" in pending and "DOES NOT VERIFY" not in pending

    seal()
    sealed = reviewer_client.get(url).content.decode()
    assert sealed.count("<td>override</td>") == 1
    assert 'class="review-verify-true">verifies' in sealed
    assert "DOES NOT VERIFY" not in sealed


def test_oversight_shows_override_rates_and_time_per_reviewer(
    make_user, reviewer, record_decision, ai_system
) -> None:
    for n in range(3):
        item = review_item_open(decision=record_decision(ai_system), by=None)
        review_claim(item=item, reviewer=reviewer)
        if n == 0:
            review_override(item=item, reviewer=reviewer, rationale="No.", output={"label": "x"})
        else:
            review_confirm(item=item, reviewer=reviewer, rationale="Yes.")
    compliance = Client()
    compliance.force_login(make_user("carla", role="compliance officer"))

    page = compliance.get(f"/admin/review/reviewitem/oversight/?system={ai_system.pk}")

    assert page.status_code == 200
    stats = page.context["stats"]
    assert (stats["reviews"], stats["overrides"]) == (3, 1)
    assert [(r["reviewer"], r["reviews"], r["overrides"]) for r in stats["by_reviewer"]] == [
        ("rita", 3, 1)
    ]
    html = page.content.decode()
    assert "<td>rita</td>" in html and "0.333" in html
    by_group = page.context["by_group"]
    if by_group["available"]:
        tables = {(t["attribute"]): t["rows"] for t in by_group["tables"]}
        assert {row["key"]: row["overridden"] for row in tables["sex"]} == {"female": 1}
        assert {row["key"]: row["reviewed"] for row in tables["sex"]} == {"female": 3}


def test_the_admin_index_links_each_role_to_its_oversight_pages(make_user) -> None:
    pages = {}
    for role in ("reviewer", "compliance officer"):
        client = Client()
        client.force_login(make_user(role.replace(" ", "-"), role=role))
        pages[role] = client.get("/admin/").content.decode()
    assert "Review queue" in pages["reviewer"] and "Oversight analytics" not in pages["reviewer"]
    assert "Oversight analytics" in pages["compliance officer"]
    assert "Admin activity" in pages["compliance officer"]
