"""Fixtures of the staff app: users in each role, decisions recorded through the service."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User

from audit.models import AISystem, Decision
from audit.serializers import DecisionSerializer
from audit.services.decisions import decision_record
from tests.audit.conftest import ai_system, decision_request  # noqa: F401 (shared fixtures)

PASSWORD = "correct horse battery staple"  # noqa: S105 (a test account)


@pytest.fixture
def make_user(db) -> Callable[..., User]:
    """`make_user("ana", role="reviewer")`: a staff user with a password, in that role's group."""

    def make(username: str, *, role: str | None = None, staff: bool = True) -> User:
        user = User.objects.create_user(username, password=PASSWORD, is_staff=staff)
        if role is not None:
            user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture
def record_decision(decision_request) -> Callable[..., Decision]:  # noqa: F811
    """Records a decision through the service: `record_decision(system, **request changes)`."""
    counter = iter(range(1, 100_000))

    def record(system: AISystem, **changes: Any) -> Decision:
        changes.setdefault("client_decision_id", f"loan-{next(counter)}")
        incoming = DecisionSerializer(data=decision_request(**changes))
        incoming.is_valid(raise_exception=True)
        decision, _ = decision_record(system=system, data=incoming.validated_data)
        return decision

    return record
