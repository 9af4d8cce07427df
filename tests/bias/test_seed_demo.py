"""`manage.py seed_demo`: a public demo system whose report shows the disparity put into it."""

from __future__ import annotations

import io
from datetime import UTC, datetime

import pytest
from django.core.management import call_command

from audit.models import AISystem, Decision, ModelVersion, Outcome
from bias.management.commands.seed_demo import demo_decisions
from bias.selectors import bias_attributes, bias_report_build
from review.models import ReviewItem
from timestamping.models import Entry

pytestmark = pytest.mark.django_db


def seed(count: int = 600) -> str:
    out = io.StringIO()
    call_command("seed_demo", "--decisions", str(count), "--no-progress", stdout=out)
    return out.getvalue()


def selection_ratio(system: AISystem, version: str, outcome: str = "ai") -> float:
    report = bias_report_build(
        system=system,
        attributes=["sex"],
        reference="male",
        model_version=ModelVersion.objects.get(system=system, version=version),
        outcome=outcome,
        public=True,
    )
    women = next(group for group in report["groups"] if group["key"] == "female")
    return women["vs_reference"]["selection_rate"]["ratio"]


def test_the_demo_report_shows_the_known_disparity_and_its_repair():
    seed()
    system = AISystem.objects.get(slug="demo-loans")
    assert system.is_public
    assert Decision.objects.filter(system=system).count() == 600
    # Most decisions have their outcome; the last month's do not yet.
    outcomes = Outcome.objects.filter(decision__system=system).count()
    assert 0.7 * 600 < outcomes < 0.95 * 600
    assert ModelVersion.objects.filter(system=system, artefact_sha256__isnull=False).count() == 2
    under_first, under_second = selection_ratio(system, "1.0"), selection_ratio(system, "2.0")
    assert 0.55 < under_first < 0.8  # below the four-fifths threshold, as built
    assert under_second > 0.85 and under_second > under_first + 0.15
    # The demo reviewer overturned some of women's close denials under 1.0 and upheld men's.
    items = ReviewItem.objects.filter(decision__system=system)
    assert items.filter(result="overridden").exists() and items.filter(result="confirmed").exists()
    assert selection_ratio(system, "1.0", outcome="final") > under_first
    assert bias_attributes(system=system) == ["age_band", "race", "sex"]
    full = bias_report_build(system=system, attributes=["race", "sex"])
    assert full["labelled"] == outcomes
    assert full["summary"]["unknown_count"] > 0  # some applicants did not give their sex or race
    report = bias_report_build(system=system, attributes=["race", "sex"], public=True)
    # Small cells (race, sex and age band, in one model version and month) are dropped and
    # counted nowhere: 600 decisions over six months leave few cells of 10.
    assert 0 < report["labelled"] < outcomes
    assert report["total"] == sum(group["count"] for group in report["groups"])


def test_running_it_again_adds_nothing():
    first = seed(300)
    entries = Entry.objects.count()
    second = seed(300)
    assert "300 decisions," in first
    assert (
        "0 decisions, 0 outcomes and 0 reviews added (300 decisions were there already)" in second
    )
    assert Entry.objects.count() == entries


def test_the_synthetic_decisions_are_the_same_for_the_same_seed():
    end = datetime(2026, 6, 1, tzinfo=UTC)
    first = demo_decisions(count=50, seed=7, end=end)
    assert first == demo_decisions(count=50, seed=7, end=end)
    assert first != demo_decisions(count=50, seed=8, end=end)
    assert all(d.outcome is None or d.outcome["observed_at"] < end for d in first)
