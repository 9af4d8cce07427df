"""Fixtures of the bias tests: the AI-decision domain's system, key and decision request."""

from tests.audit.conftest import ai_system, api_client, decision_request  # noqa: F401
