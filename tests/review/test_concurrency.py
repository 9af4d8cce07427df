"""Two reviewers acting on one item at the same moment: the row lock makes them take turns."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from review.errors import ReviewError
from review.models import ReviewAction, ReviewItem
from review.services import review_claim, review_confirm

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
