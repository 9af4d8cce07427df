"""Expensive public reads (bias reports, receipts) are limited per client address, anonymous
readers only: 429 with Retry-After, in the API's error shape on API routes, as a page otherwise."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from tests.audit.conftest import AISystemFactory, ai_system, api_client, decision_request  # noqa: F401

pytestmark = pytest.mark.django_db

RATE = 2


def fresh_address() -> str:
    """An address of its own: with REDIS_URL the counts outlive the test's transaction."""
    return f"2001:db8::{uuid.uuid4().hex[:4]}:{uuid.uuid4().hex[:4]}"


@pytest.fixture(autouse=True)
def low_rates(settings, db):
    call_command("createcachetable", verbosity=0)  # the counts' home without REDIS_URL
    settings.PORTAL_RATES = {"bias": f"{RATE}/min", "receipt": f"{RATE}/min"}


@pytest.fixture
def recorded(ai_system, api_client, decision_request) -> dict[str, Any]:  # noqa: F811
    ai_system.is_public = True
    ai_system.save()
    response = api_client.post(
        "/api/v1/decisions", json.dumps(decision_request()), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    answer = response.json()
    return {
        "slug": ai_system.slug,
        "entry": answer["id"],
        "token": answer["subject_url"].rstrip("/").rsplit("/", 1)[-1],
    }


# Each route, whether it answers as the API, and what it answers before the limit (no audit is
# published here: its receipt is a 404, counted all the same).
ROUTES = {
    "bias report API": ("/api/v1/bias/report?system={slug}&attributes=sex", "api", 200),
    "bias dashboard": ("/bias/{slug}/", "page", 200),
    "bias summary": ("/bias/{slug}/summary", "page", 200),
    "receipt API": ("/api/v1/entries/{entry}/receipt", "api", 200),
    "subject's receipt": ("/d/{token}/receipts/{entry}", "page", 200),
    "published audit's receipt": ("/bias/audits/1/receipt.json", "page", 404),
}


@pytest.mark.parametrize("route", ROUTES)
def test_the_read_past_the_rate_is_a_429_for_that_address_only(client, recorded, route):
    template, kind, status = ROUTES[route]
    url = template.format(**recorded)
    address, other = fresh_address(), fresh_address()
    for _ in range(RATE):
        assert client.get(url, REMOTE_ADDR=address).status_code == status
    refused = client.get(url, REMOTE_ADDR=address)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    if kind == "api":
        error = refused.json()["error"]
        assert error["code"] == "throttled" and error["message"] and error["fields"] == {}
    else:
        assert "Too many requests" in refused.content.decode()
    assert client.get(url, REMOTE_ADDR=other).status_code == status


def test_an_api_key_reads_receipts_past_the_anonymous_rate(api_client, recorded):  # noqa: F811
    url = f"/api/v1/entries/{recorded['entry']}/receipt"
    address = fresh_address()
    answers = {api_client.get(url, REMOTE_ADDR=address).status_code for _ in range(RATE + 2)}
    assert answers == {200}


def test_staff_read_bias_pages_and_reports_past_the_anonymous_rate(recorded, django_user_model):
    staff = django_user_model.objects.create_user("auditor", password="x" * 16, is_staff=True)
    client = APIClient()
    client.force_login(staff)
    address = fresh_address()
    for url in (
        f"/bias/{recorded['slug']}/",
        f"/api/v1/bias/report?system={recorded['slug']}&attributes=sex",
    ):
        answers = {client.get(url, REMOTE_ADDR=address).status_code for _ in range(RATE + 2)}
        assert answers == {200}, url
