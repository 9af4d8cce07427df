"""Two reviewers acting on one item at the same moment: the row lock makes them take turns."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from review.errors import ReviewError
from review.models import ReviewAction, ReviewItem
from review.services import contest_record, review_claim, review_confirm

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def race(*calls):
    """Runs the calls in threads released together; each result or the ReviewError raised."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(position, call):
        try:
            barrier.wait()
            results[position] = call()
        except ReviewError as exc:
            results[position] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(n, call)) for n, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_two_reviewers_claiming_at_once_one_wins(queued, alice, bob):
    for _ in range(5):
        item = queued()
        results = race(
            lambda item=item: review_claim(item=item, reviewer=alice),
            lambda item=item: review_claim(item=item, reviewer=bob),
        )
        errors = [result for result in results if isinstance(result, ReviewError)]
        assert len(errors) == 1, results
        item.refresh_from_db()
        assert item.claimed_by in (alice, bob)


def test_a_double_submitted_confirmation_is_recorded_once(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    results = race(
        lambda: review_confirm(item=item, reviewer=alice, rationale="fine"),
        lambda: review_confirm(item=item, reviewer=alice, rationale="fine"),
    )
    assert sum(isinstance(result, ReviewItem) for result in results) == 1
    assert ReviewAction.objects.filter(item=item).count() == 1


def test_two_first_contests_at_once_one_is_recorded_and_none_fails(record):
    """No item yet: both find none, both insert; the second insert waits for the first and
    then reads its item, which already holds a pending contest."""
    for _ in range(5):
        decision = record()
        results = race(
            lambda decision=decision: contest_record(decision=decision, statement="mine"),
            lambda decision=decision: contest_record(decision=decision, statement="mine too"),
        )
        assert sorted(type(result).__name__ for result in results) == [
            "ContestError",
            "ReviewAction",
        ], results
        item = ReviewItem.objects.get(decision=decision)
        assert (item.reason, item.status) == ("contest", "open")
        assert ReviewAction.objects.filter(decision=decision, kind="contest").count() == 1
