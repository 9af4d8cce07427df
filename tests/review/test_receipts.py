"""A decision's receipt carries its review chain; every link's own receipt verifies."""

from __future__ import annotations

import json

import pytest
from veridict_verify.receipt import receipt_verify

from review.services import review_claim, review_override
from timestamping import keys

pytestmark = pytest.mark.django_db


def test_the_decisions_receipt_links_its_review_entries_which_verify(
    api_client, queued, alice, seal, tsa_ca_pem
):
    item = review_claim(item=queued(), reviewer=alice)
    review_override(item=item, reviewer=alice, rationale="r", output={"label": "approve"})
    seal()
    decision_receipt = api_client.get(f"/api/v1/entries/{item.decision.entry.uuid}/receipt").json()
    (link,) = decision_receipt["review_chain"]
    override = item.actions.get()
    assert link["id"] == str(override.entry.uuid) and link["kind"] == "override"
    assert link["receipt_url"].startswith("http://testserver/api/v1/entries/")
    # The chain is informational: the decision's receipt still verifies with it.
    report = receipt_verify(decision_receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem)
    assert report.ok, report.as_dict()
    link_receipt = api_client.get(link["receipt_url"]).json()
    report = receipt_verify(link_receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem)
    assert report.ok, report.as_dict()
    body = json.loads(__import__("base64").b64decode(link_receipt["entry"]["canonical_b64"]))
    assert body["kind"] == "review" and body["body"]["decision"] == str(item.decision.entry.uuid)


def test_a_private_systems_review_receipts_are_not_public(queued, alice, seal):
    from rest_framework.test import APIClient

    item = review_claim(item=queued(), reviewer=alice)
    review_override(item=item, reviewer=alice, rationale="r", output={"label": "approve"})
    entry = item.actions.get().entry
    assert APIClient().get(f"/api/v1/entries/{entry.uuid}/receipt").status_code == 404


def test_a_decision_without_reviews_has_an_empty_chain(api_client, record):
    decision = record()
    receipt = api_client.get(f"/api/v1/entries/{decision.entry.uuid}/receipt").json()
    assert receipt["review_chain"] == []
