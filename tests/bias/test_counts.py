"""The de-identified counts follow ingestion, outcomes and final reviews, atomically."""

from __future__ import annotations

import datetime
import json
import threading
from typing import Any

import pytest
from django.db import connection, connections

from audit.models import AISystem, Decision
from audit.serializers import DecisionSerializer
from audit.services.bulk import BulkItem, decisions_bulk_record
from audit.services.decisions import decision_record, outcome_record
from audit.services.subjects import subject_erase
from bias.models import NO_SCORE, UNKNOWN, AttributeSet, FinalOutcome, OutcomeCount
from bias.services import counts_final_set, label_of, score_bucket
from tests.audit.conftest import AISystemFactory

pytestmark = pytest.mark.django_db


def validated(request: dict[str, Any]) -> dict[str, Any]:
    serializer = DecisionSerializer(data=request)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def record(system: AISystem, request: dict[str, Any]) -> Decision:
    decision, created = decision_record(system=system, data=validated(request))
    assert created
    return decision


def rows(system: AISystem) -> list[tuple[Any, ...]]:
    """Non-zero count rows as (attributes, predicted, actual, final, reviewed, bucket, count)."""
    found = (
        OutcomeCount.objects.filter(system=system, count__gt=0)
        .select_related("attribute_set")
        .order_by("pk")
    )
    return sorted(
        (
            tuple(sorted(row.attribute_set.attributes.items())),
            row.predicted,
            row.actual,
            row.final,
            row.reviewed,
            row.score_bucket,
            row.count,
        )
        for row in found
    )


def test_a_recorded_decision_is_counted_with_its_attributes_label_and_score_bucket(
    ai_system, decision_request
):
    record(ai_system, decision_request())

    assert rows(ai_system) == [
        ((("age_band", "30-39"), ("sex", "female")), "deny", UNKNOWN, "deny", False, 6, 1)
    ]
    row = OutcomeCount.objects.get(system=ai_system)
    assert row.day == datetime.date(2026, 11, 26)
    field_names = {field.name for field in OutcomeCount._meta.get_fields()}
    assert not field_names & {"decision", "subject", "entry", "client_decision_id"}


def test_decisions_sharing_every_dimension_share_one_row(ai_system, decision_request):
    for number in range(3):
        record(ai_system, decision_request(client_decision_id=f"loan-{number}"))
    record(
        ai_system,
        decision_request(client_decision_id="loan-x", protected_attributes={"sex": "male"}),
    )

    assert OutcomeCount.objects.filter(system=ai_system).count() == 2
    assert rows(ai_system)[0][-1] == 3
    assert AttributeSet.objects.filter(system=ai_system).count() == 2


def test_a_decision_without_attributes_is_counted_in_the_empty_attribute_set(
    ai_system, decision_request
):
    request = decision_request()
    del request["protected_attributes"]
    record(ai_system, request)

    assert rows(ai_system) == [((), "deny", UNKNOWN, "deny", False, 6, 1)]


def test_bulk_ingestion_counts_every_new_record_once(ai_system, decision_request):
    items = [
        BulkItem(
            index=number,
            data=validated(
                decision_request(
                    client_decision_id=f"bulk-{number}",
                    subject_ref=f"person-{number}",
                    output={"label": "approve" if number % 2 else "deny", "score": 0.9},
                )
            ),
        )
        for number in range(10)
    ]
    decisions_bulk_record(system=ai_system, items=items)
    decisions_bulk_record(system=ai_system, items=items)  # replays: counted once

    assert [row[1:] for row in rows(ai_system)] == [
        ("approve", UNKNOWN, "approve", False, 18, 5),
        ("deny", UNKNOWN, "deny", False, 18, 5),
    ]


def test_an_outcome_moves_the_count_from_unknown_to_the_actual_label(ai_system, decision_request):
    decision = record(ai_system, decision_request())
    moment = datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC)

    outcome_record(decision=decision, actual={"label": "repaid"}, observed_at=moment)
    assert [row[1:] for row in rows(ai_system)] == [("deny", "repaid", "deny", False, 6, 1)]

    outcome_record(decision=decision, actual={"label": "defaulted"}, observed_at=moment)
    assert [row[1:] for row in rows(ai_system)] == [("deny", "defaulted", "deny", False, 6, 1)]
    assert sum(OutcomeCount.objects.values_list("count", flat=True)) == 1


def test_a_final_review_moves_the_count_and_repeating_it_moves_nothing(ai_system, decision_request):
    decision = record(ai_system, decision_request())

    counts_final_set(decision=decision, final_output={"label": "approve"})
    counts_final_set(decision=decision, final_output={"label": "approve"})
    assert [row[1:] for row in rows(ai_system)] == [("deny", UNKNOWN, "approve", True, 6, 1)]
    assert FinalOutcome.objects.get(decision=decision).label == "approve"

    outcome_record(
        decision=decision,
        actual={"label": "repaid"},
        observed_at=datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC),
    )
    assert [row[1:] for row in rows(ai_system)] == [("deny", "repaid", "approve", True, 6, 1)]


def test_a_confirmed_decision_is_reviewed_with_its_own_label(ai_system, decision_request):
    decision = record(ai_system, decision_request())
    counts_final_set(decision=decision, final_output=dict(decision.output))
    assert [row[1:] for row in rows(ai_system)] == [("deny", UNKNOWN, "deny", True, 6, 1)]


def test_an_erased_subjects_count_stays_where_it_was(ai_system, decision_request):
    decision = record(ai_system, decision_request())
    subject_erase(subject=decision.subject, reason="request")
    decision.refresh_from_db()

    outcome_record(
        decision=decision,
        actual={"label": "repaid"},
        observed_at=datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC),
    )
    counts_final_set(decision=decision, final_output={"label": "approve"})

    assert [row[1:] for row in rows(ai_system)] == [("deny", UNKNOWN, "deny", False, 6, 1)]


def test_a_correction_replaces_the_corrected_decision_in_the_counts(ai_system, decision_request):
    first = record(ai_system, decision_request())
    record(
        ai_system,
        decision_request(
            client_decision_id="loan-1-fixed",
            output={"label": "approve", "score": 0.71},
            supersedes=str(first.entry.uuid),
        ),
    )

    assert [row[1:] for row in rows(ai_system)] == [("approve", UNKNOWN, "approve", False, 14, 1)]
    # The corrected decision's later outcome no longer moves anything.
    outcome_record(
        decision=first,
        actual={"label": "repaid"},
        observed_at=datetime.datetime(2027, 1, 1, tzinfo=datetime.UTC),
    )
    assert [row[1:] for row in rows(ai_system)] == [("approve", UNKNOWN, "approve", False, 14, 1)]


def test_counts_are_kept_per_system():
    one, two = AISystemFactory(), AISystemFactory()
    request = {
        "client_decision_id": "a",
        "model": {"name": "m", "version": "1"},
        "occurred_at": "2026-11-26T23:59:59+00:00",
        "inputs_sha256": "0" * 64,
        "output": {"label": "hire"},
        "solely_automated": True,
        "subject_ref": "x",
        "protected_attributes": {"race": "asian"},
    }
    record(one, request)
    record(two, request)
    assert rows(one) == rows(two) == [((("race", "asian"),), "hire", UNKNOWN, "hire", False, -1, 1)]


@pytest.mark.parametrize(
    ("output", "threshold", "label"),
    [
        ({"label": " approve "}, None, "approve"),
        ({"value": "B"}, None, "B"),
        ({"value": 1}, None, "1"),
        ({"score": 0.5}, 0.5, "score>=threshold"),
        ({"score": 0.49}, 0.5, "score<threshold"),
        ({"score": 0.9}, None, UNKNOWN),
        ({}, None, UNKNOWN),
        ({"label": ""}, None, UNKNOWN),
    ],
)
def test_labels_come_from_label_then_value_then_score_against_threshold(output, threshold, label):
    assert label_of(output, threshold) == label


@pytest.mark.parametrize(
    ("score", "bucket"),
    [(0.0, 0), (0.049, 0), (0.05, 1), (0.5, 10), (0.999, 19), (1.0, 19), (7, 19), (-2, 0)],
)
def test_scores_fall_in_twentieths_clamped_to_zero_and_one(score, bucket):
    assert score_bucket({"score": score}) == bucket
    assert score_bucket({"label": "x"}) == NO_SCORE


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_ingestion_and_reviews_lose_no_count(decision_request):
    """Eight threads each record decisions and finalise reviews of the same group on
    PostgreSQL at once: the total is exact, and every review moved exactly one count."""
    system = AISystemFactory()
    per_thread, threads = 15, 8
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)

    def work(number: int) -> None:
        try:
            barrier.wait()
            for step in range(per_thread):
                decision = record(
                    system,
                    decision_request(
                        client_decision_id=f"t{number}-{step}",
                        subject_ref=f"s{number}-{step}",
                    ),
                )
                if step % 3 == 0:
                    counts_final_set(decision=decision, final_output={"label": "approve"})
        except BaseException as exc:  # noqa: BLE001 -- reported by the main thread
            errors.append(exc)
        finally:
            connections.close_all()

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)

    assert not errors
    assert connection.vendor == "postgresql"
    found = {(row[3], row[4]): row[-1] for row in rows(system)}
    assert found == {("deny", False): threads * 10, ("approve", True): threads * 5}


def test_the_ingestion_api_feeds_the_counts_for_decisions_and_outcomes(
    ai_system, api_client, decision_request
):
    answer = api_client.post("/api/v1/decisions", decision_request(), format="json")
    assert answer.status_code == 201
    bulk = "\n".join(
        json.dumps(decision_request(client_decision_id=f"b{n}", subject_ref=f"p{n}"))
        for n in range(3)
    )
    answered = api_client.post("/api/v1/decisions/bulk", bulk, content_type="application/x-ndjson")
    assert answered.status_code == 200 and answered.json()["created"] == 3
    outcome = api_client.post(
        f"/api/v1/decisions/{answer.json()['id']}/outcome",
        {"actual": {"label": "repaid"}, "observed_at": "2027-01-01T00:00:00Z"},
        format="json",
    )
    assert outcome.status_code == 201

    assert [row[1:] for row in rows(ai_system)] == [
        ("deny", "repaid", "deny", False, 6, 1),
        ("deny", UNKNOWN, "deny", False, 6, 3),
    ]
