"""Fixtures of the AI-decision domain: a system, its API key and an authenticated client."""

from __future__ import annotations

import copy
from typing import Any

import factory
import pytest
from rest_framework.test import APIClient

from audit.models import AISystem
from audit.services.systems import api_key_create


class AISystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = AISystem

    name = factory.Sequence(lambda n: f"Loan scorer {n}")
    slug = factory.Sequence(lambda n: f"loan-scorer-{n}")


@pytest.fixture
def ai_system(db) -> AISystem:
    return AISystemFactory()


@pytest.fixture
def api_client(ai_system) -> APIClient:
    """A client that sends the system's API key."""
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=ai_system, name='test')}"
    )
    return client


@pytest.fixture
def decision_request():
    """A valid decision request, a new copy each time; `make(**changes)` varies it."""
    base: dict[str, Any] = {
        "client_decision_id": "loan-1",
        "model": {"name": "loan-scorer", "version": "4.2.0"},
        "occurred_at": "2026-11-26T10:15:00Z",
        "inputs": {"income": 42000, "amount": 15000},
        "output": {"label": "deny", "score": 0.31},
        "confidence": 0.82,
        "threshold": 0.5,
        "explanation": {"main_factors": ["debt-to-income ratio"], "ai_role": "recommendation"},
        "solely_automated": False,
        "owner": "officer-17",
        "subject_ref": "applicant-88231",
        "protected_attributes": {"sex": "female", "age_band": "30-39"},
    }

    def make(**changes: Any) -> dict[str, Any]:
        request = copy.deepcopy(base)
        request.update(changes)
        return {key: value for key, value in request.items() if value is not None}

    return make
