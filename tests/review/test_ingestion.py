"""Oversight at ingestion: policy guardrails, low confidence and sampling, single and bulk alike,
and what the decision API then tells the AI system."""

from __future__ import annotations

import json

import pytest

from audit.models import Decision
from review.models import PolicySet, ReviewItem, ReviewSettings
from review.services import PolicyError, policy_set_publish, review_claim, review_override
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

DENY_UNSURE = {
    "name": "unsure denials",
    "if": {
        "all": [
            {"field": "output.label", "op": "eq", "value": "deny"},
            {"field": "confidence", "op": "lt", "value": 0.7},
        ]
    },
    "then": "review",
}
BIG_LOANS = {
    "name": "big loans",
    "if": {"field": "inputs.amount", "op": "gt", "value": 50_000},
    "then": "review",
}
UNDECLARED = {
    "name": "undeclared model",
    "if": {"field": "model.declared", "op": "eq", "value": False},
    "then": "reject",
}


def post(client, body, **headers):
    return client.post(
        "/api/v1/decisions", json.dumps(body), content_type="application/json", **headers
    )


def leaf(answer) -> dict:
    return json.loads(bytes(Entry.objects.get(uuid=answer["id"]).canonical))["body"]


def test_without_a_policy_the_leaf_says_so_and_nothing_is_queued(api_client, decision_request):
    answer = post(api_client, decision_request()).json()
    assert answer["review"] is None
    assert leaf(answer)["policy"] is None
    assert not ReviewItem.objects.exists()


def test_a_review_rule_queues_the_decision_and_the_answer_says_so(
    api_client, ai_system, decision_request
):
    policy = policy_set_publish(system=ai_system, rules=[DENY_UNSURE, BIG_LOANS], by=None)
    answer = post(api_client, decision_request(inputs={"amount": 60_000})).json()
    assert answer["review"] == {"status": "pending", "reason": "policy"}
    item = ReviewItem.objects.get(decision__entry__uuid=answer["id"])
    assert item.reason_detail == "rule 2 (big loans) of policy version 1"
    assert leaf(answer)["policy"] == {"version": 1, "entry": str(policy.entry.uuid)}
    calm = post(api_client, decision_request(client_decision_id="loan-2")).json()
    assert calm["review"] is None
    assert leaf(calm)["policy"] == {"version": 1, "entry": str(policy.entry.uuid)}


def test_a_reject_rule_answers_422_naming_the_rule_and_records_nothing(
    api_client, ai_system, decision_request
):
    policy_set_publish(system=ai_system, rules=[BIG_LOANS, UNDECLARED], by=None)
    entries = Entry.objects.count()
    response = post(api_client, decision_request(inputs={"amount": 60_000}))
    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "policy_rejected"
    assert "rule 2 (undeclared model)" in error["fields"]["policy"][0]
    assert not Decision.objects.exists()
    assert Entry.objects.count() == entries


def test_a_declared_model_passes_the_undeclared_rule(api_client, ai_system, decision_request):
    policy_set_publish(system=ai_system, rules=[UNDECLARED], by=None)
    declared = api_client.post(
        "/api/v1/model-versions",
        {"name": "loan-scorer", "version": "4.2.0", "artefact_sha256": "a" * 64},
        format="json",
    )
    assert declared.status_code == 201
    assert post(api_client, decision_request()).status_code == 201


def test_a_rule_change_between_two_decisions_applies_to_the_second_only(
    api_client, ai_system, decision_request
):
    first_policy = policy_set_publish(system=ai_system, rules=[DENY_UNSURE], by=None)
    first = post(api_client, decision_request(client_decision_id="a", inputs={"amount": 90_000}))
    second_policy = policy_set_publish(system=ai_system, rules=[BIG_LOANS], by=None)
    second = post(api_client, decision_request(client_decision_id="b", inputs={"amount": 90_000}))
    assert first.json()["review"] is None
    assert second.json()["review"] == {"status": "pending", "reason": "policy"}
    assert leaf(first.json())["policy"]["entry"] == str(first_policy.entry.uuid)
    assert leaf(second.json())["policy"] == {"version": 2, "entry": str(second_policy.entry.uuid)}
    # A retry of the first after the change is still the first: same answer, no review.
    again = post(api_client, decision_request(client_decision_id="a", inputs={"amount": 90_000}))
    assert again.status_code == 200 and again.json() == first.json()


def test_a_retry_is_answered_even_if_a_new_rule_would_reject_it(
    api_client, ai_system, decision_request
):
    first = post(api_client, decision_request(), HTTP_IDEMPOTENCY_KEY="k")
    policy_set_publish(system=ai_system, rules=[UNDECLARED], by=None)
    again = post(api_client, decision_request(), HTTP_IDEMPOTENCY_KEY="k")
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]


def test_each_policy_version_is_a_ledger_entry(ai_system, alice):
    from tests.review.conftest import staff_user

    publisher = staff_user("pat", "publish_policy", "review_all_systems")
    first = policy_set_publish(system=ai_system, rules=[DENY_UNSURE], by=publisher)
    second = policy_set_publish(system=ai_system, rules=[], by=publisher)
    assert (first.version, second.version) == (1, 2)
    body = json.loads(bytes(second.entry.canonical))["body"]
    assert body == {
        "type": "policy",
        "system": ai_system.slug,
        "version": 2,
        "rules": [],
        "previous": str(first.entry.uuid),
        "published_by": body["published_by"],
    }
    assert second.entry.kind == "policy" and body["published_by"].startswith("u-")
    assert ReviewSettings.objects.get(system=ai_system).current_policy == second


def test_publishing_needs_the_permission(ai_system, alice):
    from review.services import NotAllowed

    with pytest.raises(NotAllowed):
        policy_set_publish(system=ai_system, rules=[], by=alice)
    assert not PolicySet.objects.exists()


def test_a_bad_rule_set_is_refused_with_a_clear_error(ai_system):
    with pytest.raises(PolicyError, match=r"rule 1\.if\.all\[1\]: op must be one of"):
        policy_set_publish(
            system=ai_system,
            rules=[
                {
                    "if": {
                        "all": [
                            DENY_UNSURE["if"]["all"][0],
                            {"field": "confidence", "op": "<", "value": 1},
                        ]
                    },
                    "then": "review",
                }
            ],
            by=None,
        )
    assert not PolicySet.objects.exists()


def test_low_confidence_and_sampling_queue_decisions(api_client, settings_of, decision_request):
    settings_of.low_confidence_below = 0.5
    settings_of.save()
    unsure = post(api_client, decision_request(client_decision_id="u", confidence=0.4)).json()
    sure = post(api_client, decision_request(client_decision_id="s", confidence=0.9)).json()
    assert unsure["review"] == {"status": "pending", "reason": "low_confidence"}
    assert sure["review"] is None
    settings_of.sampling_rate = 1.0
    settings_of.save()
    sampled = post(api_client, decision_request(client_decision_id="x", confidence=0.9)).json()
    assert sampled["review"] == {"status": "pending", "reason": "sample"}


def test_sampling_draws_about_the_configured_share(record, settings_of):
    settings_of.sampling_rate = 0.3
    settings_of.save()
    queued = sum(1 for _ in range(200) if ReviewItem.objects.filter(decision=record()).exists())
    assert 35 <= queued <= 85  # 60 expected; the bounds are over 4 standard deviations wide


def test_the_decision_api_shows_the_review_and_the_final_output(
    api_client, settings_of, decision_request, alice
):
    settings_of.sampling_rate = 1.0
    settings_of.save()
    answer = post(api_client, decision_request()).json()
    read = api_client.get(f"/api/v1/decisions/{answer['id']}").json()
    assert read["review"]["status"] == "pending" and read["review"]["state"] == "open"
    assert read["review"]["reason"] == "sample" and read["review"]["due_at"]
    assert read["final_output"] is None
    item = ReviewItem.objects.get(decision__entry__uuid=answer["id"])
    review_claim(item=item, reviewer=alice)
    review_override(item=item, reviewer=alice, rationale="r", output={"label": "approve"})
    read = api_client.get(f"/api/v1/decisions/{answer['id']}").json()
    assert read["review"]["status"] == "closed" and read["review"]["result"] == "overridden"
    assert read["review"]["final_output"] == read["final_output"] == {"label": "approve"}
    listed = api_client.get("/api/v1/decisions").json()["results"][0]
    assert listed["final_output"] == {"label": "approve"}


def test_an_unreviewed_decisions_final_output_is_the_ais(api_client, decision_request):
    answer = post(api_client, decision_request()).json()
    read = api_client.get(f"/api/v1/decisions/{answer['id']}").json()
    assert read["review"] is None
    assert read["final_output"] == {"label": "deny", "score": 0.31}


def bulk(client, records):
    body = "\n".join(json.dumps(record) for record in records)
    return client.post("/api/v1/decisions/bulk", body, content_type="application/x-ndjson")


def test_the_bulk_path_applies_the_same_policy(
    api_client, ai_system, decision_request, settings_of
):
    policy = policy_set_publish(system=ai_system, rules=[BIG_LOANS, UNDECLARED], by=None)
    response = bulk(
        api_client,
        [
            decision_request(client_decision_id="small", inputs={"amount": 10}),
            decision_request(client_decision_id="small", inputs={"amount": 10}),
        ],
    )
    results = response.json()["results"]
    assert [r["status"] for r in results] == [422, 422], results
    assert "rule 2 (undeclared model)" in results[0]["error"]["message"]
    assert not Decision.objects.exists()
    policy = policy_set_publish(system=ai_system, rules=[BIG_LOANS], by=None)
    response = bulk(
        api_client,
        [
            decision_request(client_decision_id="big", inputs={"amount": 60_000}),
            decision_request(client_decision_id="small", inputs={"amount": 10}),
        ],
    )
    big, small = response.json()["results"]
    assert (big["status"], small["status"]) == (201, 201)
    item = ReviewItem.objects.get(decision__entry__uuid=big["id"])
    assert item.reason == "policy"
    assert not ReviewItem.objects.filter(decision__entry__uuid=small["id"]).exists()
    body = json.loads(bytes(Entry.objects.get(uuid=big["id"]).canonical))["body"]
    assert body["policy"] == {"version": 2, "entry": str(policy.entry.uuid)}


def test_bulk_and_single_write_the_same_oversight_rows(
    api_client, settings_of, decision_request, bob
):
    settings_of.default_owner = bob
    settings_of.low_confidence_below = 0.5
    settings_of.save()
    single = post(
        api_client, decision_request(client_decision_id="one", owner=None, confidence=0.1)
    ).json()
    (many,) = bulk(
        api_client, [decision_request(client_decision_id="two", owner=None, confidence=0.1)]
    ).json()["results"]
    for answer_id in (single["id"], many["id"]):
        decision = Decision.objects.get(entry__uuid=answer_id)
        assert decision.review_item.reason == "low_confidence"
        assert decision.owners.get().user == bob
    single_leaf, bulk_leaf = leaf(single), leaf({"id": many["id"]})
    assert single_leaf["attribution"] == bulk_leaf["attribution"]
    assert single_leaf["policy"] == bulk_leaf["policy"] is None
