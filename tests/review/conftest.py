"""Fixtures of the review app: staff users with review permissions, review settings, decisions."""

# ruff: noqa: F811 (fixtures taking the imported fixtures as arguments)

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command

from audit.models import AISystem, Decision
from audit.services.decisions import decision_record
from review.models import ReviewItem, ReviewSettings
from review.services import review_settings_get_or_create

# The AI-decision fixtures, shared: pytest finds fixtures in this module's namespace.
from tests.audit.conftest import ai_system, api_client, decision_request  # noqa: F401

REVIEWER_PERMISSIONS = ("review_decision", "approve_override", "assign_owner")


def staff_user(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username=username, password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="review", codename__in=codenames)
    )
    return User.objects.get(pk=user.pk)  # a fresh object: no stale permission cache


@pytest.fixture
def settings_of(ai_system: AISystem):
    """The system's review settings (the alice and bob fixtures add themselves as reviewers)."""
    review_settings = review_settings_get_or_create(system=ai_system)
    return review_settings


@pytest.fixture
def alice(settings_of: ReviewSettings) -> User:
    user = staff_user("alice", *REVIEWER_PERMISSIONS)
    settings_of.reviewers.add(user)
    return user


@pytest.fixture
def bob(settings_of: ReviewSettings) -> User:
    user = staff_user("bob", *REVIEWER_PERMISSIONS)
    settings_of.reviewers.add(user)
    return user


@pytest.fixture
def outsider(db) -> User:
    """A reviewer, but of no system."""
    return staff_user("olga", *REVIEWER_PERMISSIONS)


@pytest.fixture
def compliance(db) -> User:
    return staff_user("carol", *REVIEWER_PERMISSIONS, "review_all_systems", "view_oversight")


@pytest.fixture
def record(ai_system: AISystem, decision_request):
    """Records a decision of the system through the service; `record(**changes)`."""
    counter = iter(range(1, 10_000))

    def make(system: AISystem | None = None, **changes: Any) -> Decision:
        changes.setdefault("client_decision_id", f"loan-{next(counter)}")
        decision, _ = decision_record(
            system=system or ai_system, data=_validated(decision_request(**changes))
        )
        return decision

    return make


def _validated(request: dict[str, Any]) -> dict[str, Any]:
    from audit.serializers import DecisionSerializer

    incoming = DecisionSerializer(data=request)
    incoming.is_valid(raise_exception=True)
    return incoming.validated_data


@pytest.fixture
def queued(record, settings_of: ReviewSettings):
    """A decision in the queue (sampling rate 1), and its open item."""

    def make(**changes: Any) -> ReviewItem:
        settings_of.sampling_rate = 1.0
        settings_of.save()
        return record(**changes).review_item

    return make


@pytest.fixture
def cache_table(db):
    """The database cache's table (the contest rate limit counts there without REDIS_URL)."""
    call_command("createcachetable", verbosity=0)


@pytest.fixture
def eager_tasks():
    """Celery tasks run in the calling process, as a worker would run them."""
    from veridict.celery import app

    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = False
