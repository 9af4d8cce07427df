"""Erasure leaves nothing that identifies the person: no client decision id or Idempotency-Key
in any table, no open review item, and a log entry that does not list the decisions."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from audit.models import Decision
from audit.services.subjects import subject_erase
from review.models import ReviewItem, WebhookDelivery
from review.services import review_claim, review_confirm

pytestmark = pytest.mark.django_db

SECRETS = ("loan-SECRET-A-4711", "idem-SECRET-A-0815", "loan-SECRET-B-4712", "idem-SECRET-B-0816")


def tables_holding(text: str) -> list[str]:
    """Every table and column whose value contains the text: the whole database, as a dump
    would show it (text, JSON and binary columns alike)."""
    needle = text.encode()
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            columns = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                for column, value in zip(columns, row, strict=True):
                    raw = bytes(value) if isinstance(value, bytes | memoryview) else None
                    if raw is None:
                        raw = str(value).encode()
                    if needle in raw:
                        found.append(f"{table}.{column}")
    return found


def post(api_client, body, key):
    response = api_client.post("/api/v1/decisions", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    assert response.status_code in (200, 201), response.content
    return response


@pytest.fixture
def two_decisions(api_client, decision_request, settings_of, alice):
    """Two decisions of one person, both sent to review; the first reviewed, so that its
    webhook body names it; the second still open."""
    settings_of.sampling_rate = 1.0
    settings_of.webhook_url = "https://hooks.example/veridict"
    settings_of.save()
    first = post(api_client, decision_request(client_decision_id=SECRETS[0]), SECRETS[1]).json()
    second = post(api_client, decision_request(client_decision_id=SECRETS[2]), SECRETS[3]).json()
    reviewed = ReviewItem.objects.get(decision__entry__uuid=first["id"])
    review_claim(item=reviewed, reviewer=alice)
    review_confirm(item=reviewed, reviewer=alice, rationale="sound")
    return first, second


def test_after_erasure_no_table_holds_the_client_decision_id_or_idempotency_key(two_decisions):
    first, _ = two_decisions
    assert "review_webhookdelivery.body" in tables_holding(SECRETS[0])  # the scan finds it
    decision = Decision.objects.get(entry__uuid=first["id"])

    subject_erase(subject=decision.subject, reason="request", note="Art. 17")

    for text in SECRETS:
        assert tables_holding(text) == [], text
    assert WebhookDelivery.objects.get().body  # the delivery stays, without the id


def test_before_erasure_retries_and_client_id_lookups_work_and_after_it_they_find_nothing(
    api_client, decision_request
):
    body = decision_request(client_decision_id=SECRETS[0])
    first = post(api_client, body, SECRETS[1])
    assert first.status_code == 201
    again = post(api_client, body, SECRETS[1])
    assert (again.status_code, again.json()["id"]) == (200, first.json()["id"])
    same_id = api_client.post("/api/v1/decisions", body, format="json")
    assert (same_id.status_code, same_id.json()["id"]) == (200, first.json()["id"])
    other = api_client.post(
        "/api/v1/decisions", decision_request(client_decision_id=SECRETS[0], confidence=0.1),
        format="json",
    )  # fmt: skip
    assert other.status_code == 409
    other_key = api_client.post(
        "/api/v1/decisions", decision_request(client_decision_id="x"), format="json",
        HTTP_IDEMPOTENCY_KEY=SECRETS[1],
    )  # fmt: skip
    assert other_key.status_code == 409
    listed = api_client.get("/api/v1/decisions", {"client_id": SECRETS[0]}).json()["results"]
    assert [(d["id"], d["client_decision_id"]) for d in listed] == [
        (first.json()["id"], SECRETS[0])
    ]

    subject_erase(
        subject=Decision.objects.get(entry__uuid=first.json()["id"]).subject, reason="request"
    )

    assert api_client.get("/api/v1/decisions", {"client_id": SECRETS[0]}).json()["results"] == []
    shown = api_client.get(f"/api/v1/decisions/{first.json()['id']}").json()
    assert shown["client_decision_id"] is None


def test_erasure_closes_the_open_review_item_with_its_reason_in_the_queue(two_decisions):
    _, second = two_decisions
    item = ReviewItem.objects.get(decision__entry__uuid=second["id"])
    assert item.status == ReviewItem.Status.OPEN

    erasure = subject_erase(subject=item.decision.subject, reason="request")

    item.refresh_from_db()
    assert (item.status, item.closed_by, item.erasure) == (
        ReviewItem.Status.CLOSED,
        ReviewItem.ClosedBy.ERASURE,
        erasure,
    )
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="x"))
    queue = admin.get("/admin/review/reviewitem/", {"status": "all"}).content.decode()
    assert "Closed: erasure of the subject&#x27;s personal data" in queue
    todo = admin.get("/admin/review/reviewitem/").content.decode()
    assert f"(erased) {item.decision.pk}" not in todo  # no longer in the to-do queue
