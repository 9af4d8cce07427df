"""Retries found by the unique constraints alone, with no lookup first; subjects upserted."""

from __future__ import annotations

import pytest

from audit.models import Decision, Subject
from timestamping.models import Entry

pytestmark = pytest.mark.django_db


def post(client, body, key=None):  # type: ignore[no-untyped-def]
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post("/api/v1/decisions", body, format="json", **headers)


def test_a_retry_answers_the_first_answer_and_leaves_no_second_entry(api_client, decision_request):
    first = post(api_client, decision_request(), key="k-1")
    assert first.status_code == 201
    entries = Entry.objects.count()
    again = post(api_client, decision_request(), key="k-1")
    same_id = post(api_client, decision_request())  # no key: found by its client decision id
    assert again.status_code == same_id.status_code == 200
    assert again.json() == same_id.json() == first.json()
    assert Entry.objects.count() == entries
    assert Decision.objects.count() == 1


def test_other_content_under_a_used_key_or_id_is_a_409_naming_it(api_client, decision_request):
    assert post(api_client, decision_request(), key="k-1").status_code == 201
    by_key = post(api_client, decision_request(client_decision_id="loan-2", confidence=0.1), "k-1")
    by_id = post(api_client, decision_request(confidence=0.1))
    assert by_key.status_code == by_id.status_code == 409
    assert "Idempotency-Key" in by_key.json()["error"]["message"]
    assert "client_decision_id" in by_id.json()["error"]["message"]


def test_a_retried_correction_is_a_replay_and_a_second_correction_a_409(
    api_client, decision_request
):
    original = post(api_client, decision_request()).json()["id"]
    correction = decision_request(client_decision_id="loan-1b", supersedes=original)
    first = post(api_client, correction)
    assert first.status_code == 201
    retry = post(api_client, correction)
    assert retry.status_code == 200 and retry.json() == first.json()
    other = post(api_client, decision_request(client_decision_id="loan-1c", supersedes=original))
    assert other.status_code == 409
    assert "superseded" in other.json()["error"]["message"]


def test_decisions_about_one_person_share_a_subject_and_its_key(api_client, decision_request):
    for number in range(3):
        answer = post(api_client, decision_request(client_decision_id=f"loan-{number}"))
        assert answer.status_code == 201
    subject = Subject.objects.get()
    assert subject.wrapped_key
    assert set(Decision.objects.values_list("subject", flat=True)) == {subject.pk}


def test_a_person_erased_before_gets_a_new_key(api_client, decision_request):
    from audit.services.subjects import subject_erase

    assert post(api_client, decision_request()).status_code == 201
    subject = Subject.objects.get()
    old_key = bytes(subject.wrapped_key)
    assert subject_erase(subject=subject, reason="request") is not None
    assert post(api_client, decision_request(client_decision_id="loan-2")).status_code == 201
    subject.refresh_from_db()
    assert subject.wrapped_key is not None and bytes(subject.wrapped_key) != old_key
