"""POST /api/v1/decisions and the caller's reads, as an AI system uses them."""

from __future__ import annotations

import json

import pytest
from veridict_verify.receipt import receipt_verify

from audit import vault
from audit.models import Decision, ModelVersion
from audit.services.systems import api_key_create
from timestamping import keys
from timestamping.models import Entry

pytestmark = pytest.mark.django_db


def post(client, body, **headers):
    return client.post(
        "/api/v1/decisions", json.dumps(body), content_type="application/json", **headers
    )


def test_a_decision_is_recorded_with_its_entry_and_set(api_client, decision_request):
    response = post(api_client, decision_request())
    assert response.status_code == 201, response.content
    answer = response.json()
    entry = Entry.objects.get(uuid=answer["id"])
    assert answer["leaf_hash"] == bytes(entry.leaf_hash).hex()
    assert answer["set"] == entry.set_note
    assert answer["receipt_url"].endswith(f"/api/v1/entries/{answer['id']}/receipt")
    assert "/d/" in answer["subject_url"]


def test_the_leaf_holds_commitments_not_personal_data(api_client, decision_request):
    answer = post(api_client, decision_request()).json()
    canonical = bytes(Entry.objects.get(uuid=answer["id"]).canonical).decode()
    for personal in (
        "applicant-88231",
        "officer-17",
        "42000",
        "female",
        "debt-to-income",
        "loan-1",
    ):
        assert personal not in canonical
    body = json.loads(canonical)["body"]
    assert set(body["commitments"]) == {
        "client_decision_id",
        "subject_ref",
        "inputs",
        "explanation",
        "owner",
        "protected_attributes",
    }
    assert body["output"] == {"label": "deny", "score": 0.31}


def test_a_retry_with_the_same_key_answers_200_with_the_first_answer(api_client, decision_request):
    first = post(api_client, decision_request(), HTTP_IDEMPOTENCY_KEY="k-1")
    again = post(api_client, decision_request(), HTTP_IDEMPOTENCY_KEY="k-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()
    assert Decision.objects.count() == 1


def test_a_different_request_under_the_same_key_is_a_409(api_client, decision_request):
    post(api_client, decision_request(), HTTP_IDEMPOTENCY_KEY="k-1")
    response = post(
        api_client, decision_request(client_decision_id="loan-2"), HTTP_IDEMPOTENCY_KEY="k-1"
    )
    assert response.status_code == 409
    assert "Idempotency-Key" in response.json()["error"]["message"]


def test_the_same_client_decision_id_with_other_content_is_a_409(api_client, decision_request):
    post(api_client, decision_request())
    response = post(api_client, decision_request(output={"label": "approve"}))
    assert response.status_code == 409
    assert "client_decision_id" in response.json()["error"]["message"]


def test_an_unknown_model_version_is_registered_undeclared(api_client, decision_request):
    post(api_client, decision_request())
    version = ModelVersion.objects.get()
    assert (version.name, version.version, version.declared) == ("loan-scorer", "4.2.0", False)
    declared = api_client.post(
        "/api/v1/model-versions",
        {"name": "loan-scorer", "version": "4.2.0", "artefact_sha256": "ab" * 32},
        format="json",
    )
    assert declared.status_code == 201
    version.refresh_from_db()
    assert version.declared


def test_a_key_reads_only_its_own_systems_decisions(api_client, decision_request, ai_system):
    from tests.audit.conftest import AISystemFactory

    answer = post(api_client, decision_request()).json()
    other = api_client.__class__()
    other.credentials(
        HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=AISystemFactory(), name='x')}"
    )
    assert other.get(f"/api/v1/decisions/{answer['id']}").status_code == 404
    assert other.get("/api/v1/decisions").json()["results"] == []
    mine = api_client.get(f"/api/v1/decisions/{answer['id']}")
    assert mine.status_code == 200
    assert mine.json()["client_decision_id"] == "loan-1"
    assert (
        api_client.get("/api/v1/decisions?client_id=loan-1").json()["results"][0]["id"]
        == answer["id"]
    )
    assert api_client.get("/api/v1/decisions?client_id=nope").json()["results"] == []


def test_a_private_systems_receipt_is_for_its_key_only(
    api_client, decision_request, client, seal, tsa_ca_pem
):
    answer = post(api_client, decision_request()).json()
    seal()
    url = f"/api/v1/entries/{answer['id']}/receipt"
    assert client.get(url).status_code == 404
    receipt = api_client.get(url).json()
    assert receipt_verify(receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem).ok


def test_an_outcome_is_its_own_entry_naming_the_decision(api_client, decision_request):
    answer = post(api_client, decision_request()).json()
    response = api_client.post(
        f"/api/v1/decisions/{answer['id']}/outcome",
        {"actual": {"label": "defaulted"}, "observed_at": "2027-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 201, response.content
    leaf = json.loads(bytes(Entry.objects.get(uuid=response.json()["id"]).canonical))
    assert leaf["body"]["decision"] == answer["id"]
    assert api_client.get(f"/api/v1/decisions/{answer['id']}").json()["outcomes"][0]["actual"] == {
        "label": "defaulted"
    }


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"a": 1, "a": 2}', "duplicate key 'a'"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": 9007199254740993}', "beyond"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": ', "malformed JSON"),
        (b"\xff{}", "not UTF-8"),
    ],
)
def test_json_that_is_not_i_json_is_a_400_naming_the_problem(api_client, raw, problem):
    response = api_client.post("/api/v1/decisions", raw, content_type="application/json")
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]


def test_unknown_and_wrong_fields_are_named(api_client, decision_request):
    response = post(api_client, decision_request(colour="blue", confidence=3))
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "colour" in fields and "confidence" in fields


def test_a_bad_or_revoked_key_is_a_401(api_client, decision_request, ai_system):
    bad = api_client.__class__()
    bad.credentials(HTTP_AUTHORIZATION="Api-Key nope.nope")
    assert post(bad, decision_request()).status_code == 401
    ai_system.api_keys.update(revoked=True)
    assert post(api_client, decision_request()).status_code == 401
    assert post(api_client.__class__(), decision_request()).status_code == 401


def test_the_subject_page_shows_the_decision_and_its_explanation(
    api_client, decision_request, client
):
    answer = post(api_client, decision_request()).json()
    page = client.get(answer["subject_url"].split("testserver")[1])
    assert page.status_code == 200
    html = page.content.decode()
    assert "debt-to-income ratio" in html and "deny" in html


def test_the_schema_example_is_a_valid_request(api_client):
    from audit.api import DECISION_EXAMPLE

    assert post(api_client, DECISION_EXAMPLE).status_code == 201


def test_a_decision_and_its_outcome_are_in_their_system_s_log_under_a_keyed_id(
    api_client, decision_request, ai_system
):
    answer = post(api_client, decision_request()).json()
    outcome = api_client.post(
        f"/api/v1/decisions/{answer['id']}/outcome",
        {"actual": {"label": "repaid"}, "observed_at": "2027-01-01T00:00:00Z"},
        format="json",
    ).json()
    stream = vault.system_stream(system_id=ai_system.pk)
    for entry_id in (answer["id"], outcome["id"]):
        entry = Entry.objects.get(uuid=entry_id)
        assert entry.stream == stream
        assert json.loads(bytes(entry.canonical))["stream"] == stream
    # Opaque: neither the system's slug nor its name, and another system has another id.
    assert ai_system.slug not in stream and len(stream) == 32
    assert vault.system_stream(system_id=ai_system.pk + 1) != stream
