"""Oversight analytics: override rates, time to review, the rubber-stamp indicator."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from review.selectors import oversight_stats
from review.services import review_claim, review_confirm, review_override

pytestmark = pytest.mark.django_db


def reviewed(queued, reviewer, *, seconds: int, override: bool = False) -> None:
    item = review_claim(item=queued(), reviewer=reviewer)
    started = timezone.now() - timedelta(seconds=seconds)
    if override:
        review_override(
            item=item,
            reviewer=reviewer,
            rationale="r",
            output={"label": "approve"},
            started_at=started,
        )
    else:
        review_confirm(item=item, reviewer=reviewer, rationale="ok", started_at=started)


def test_override_rates_and_the_rubber_stamp_indicator(queued, alice, bob, ai_system):
    for _ in range(5):
        reviewed(queued, alice, seconds=2)  # confirms in two seconds
    for seconds in (300, 320, 340, 360, 380):
        reviewed(queued, bob, seconds=seconds)
    reviewed(queued, bob, seconds=400, override=True)
    stats = oversight_stats()
    assert (stats["reviews"], stats["overrides"]) == (11, 1)
    assert stats["override_rate"] == pytest.approx(1 / 11)
    assert 300 <= stats["median_seconds"] <= 302
    by_reviewer = {row["reviewer"]: row for row in stats["by_reviewer"]}
    assert by_reviewer["alice"]["override_rate"] == 0
    assert by_reviewer["bob"]["override_rate"] == pytest.approx(1 / 6)
    assert by_reviewer["alice"]["rubber_stamp"] is True
    assert by_reviewer["bob"]["rubber_stamp"] is False
    assert 2 <= by_reviewer["alice"]["median_confirm_seconds"] <= 4
    (system_row,) = stats["by_system"]
    assert (system_row["system"], system_row["reviews"], system_row["overrides"]) == (
        ai_system.slug,
        11,
        1,
    )
    (model_row,) = stats["by_model_version"]
    assert (model_row["model"], model_row["version"]) == ("loan-scorer", "4.2.0")
    assert oversight_stats(system=ai_system)["reviews"] == 11


def test_few_confirmations_are_not_flagged(queued, alice, bob):
    reviewed(queued, alice, seconds=1)
    reviewed(queued, bob, seconds=600)
    assert not any(row["rubber_stamp"] for row in oversight_stats()["by_reviewer"])


def test_no_reviews_no_rates():
    stats = oversight_stats()
    assert stats["reviews"] == 0 and stats["override_rate"] is None
    assert stats["median_seconds"] is None and stats["by_reviewer"] == []
