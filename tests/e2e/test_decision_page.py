"""The decision page (a decision's subject_url) in Chromium: its review chain, with receipts the
person can fetch and check, and a contest that reaches the review queue."""

# ruff: noqa: F401, F811 (fixtures imported for pytest to find, then taken as arguments)

from __future__ import annotations

import json

import pytest
from django.urls import reverse
from playwright.sync_api import Page, expect
from veridict_verify.receipt import receipt_verify

from review.models import ReviewItem
from review.services import review_claim, review_confirm, review_item_open
from tests.review.conftest import (
    ai_system,
    alice,
    api_client,
    cache_table,
    decision_request,
    record,
    settings_of,
)
from timestamping import keys

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_decision_page_shows_its_review_chain_and_takes_a_contest(
    page: Page, live_server, record, alice, cache_table, seal, tsa_ca_pem, screenshot
) -> None:
    decision = record()
    item = review_item_open(decision=decision, by=alice, reason="manual")
    item = review_claim(item=item, reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="The payslip supports the decision.")
    seal()

    url = reverse("decision-subject", kwargs={"token": decision.subject_token})
    page.goto(live_server.url + url)
    expect(page.locator(".review-status")).to_contain_text("confirmed it")
    steps = page.locator("table.review-steps tbody tr")
    expect(steps).to_have_count(1)
    expect(steps.first).to_contain_text("Confirm")
    screenshot("reviewed")

    # The system is private: the public receipt API refuses, the page's own links serve them.
    for link in [steps.first.locator("a"), page.get_by_role("link", name=str(decision.entry.uuid))]:
        response = page.request.get(live_server.url + link.get_attribute("href"))
        assert response.status == 200
        report = receipt_verify(
            json.loads(response.body()), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
        )
        assert report.ok, report.as_dict()
    public = page.request.get(f"{live_server.url}/api/v1/entries/{decision.entry.uuid}/receipt")
    assert public.status == 404

    page.get_by_label("Why do you contest this decision?").fill(
        "My income was misread from the payslip."
    )
    page.get_by_role("button", name="Contest this decision").click()
    expect(page.get_by_role("status").first).to_contain_text("your contest was recorded")
    expect(page.locator(".contest-status")).to_contain_text("waiting for a reviewer")
    screenshot("contested")
    item = ReviewItem.objects.get(decision=decision)
    assert item.reason == ReviewItem.Reason.CONTEST and item.status == ReviewItem.Status.OPEN
    expect(page.locator("table.review-steps tbody tr")).to_have_count(2)
