"""POST /api/v1/decisions/bulk: many decisions at once, as an AI system sends them."""

from __future__ import annotations

import io
import json
import threading

import pytest
from django.db import connection
from django.test import override_settings
from hypothesis import given, settings
from hypothesis import strategies as st
from veridict_verify.receipt import receipt_verify

from audit import api_bulk, vault
from audit.models import Decision, Erasure, Subject
from audit.selectors import decisions_by_client_id
from audit.services.bulk import BulkItem, decisions_bulk_record
from audit.services.subjects import decision_client_id, decision_personal_data, subject_erase
from timestamping import keys
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

URL = "/api/v1/decisions/bulk"


def ndjson(records: list[dict]) -> bytes:
    return b"".join(json.dumps(record).encode() + b"\n" for record in records)


def post_ndjson(client, body: bytes):
    return client.post(URL, body, content_type="application/x-ndjson")


def post_array(client, records: list[dict]):
    return client.post(URL, json.dumps(records), content_type="application/json")


def loans(decision_request, count: int, prefix: str = "loan") -> list[dict]:
    return [
        decision_request(client_decision_id=f"{prefix}-{n}", subject_ref=f"applicant-{n % 3}")
        for n in range(count)
    ]


def test_ndjson_records_are_recorded_in_input_order(api_client, decision_request):
    records = loans(decision_request, 3)
    response = post_ndjson(api_client, ndjson(records))
    assert response.status_code == 200, response.content
    answer = response.json()
    assert (answer["created"], answer["replayed"], answer["failed"]) == (3, 0, 0)
    assert [result["index"] for result in answer["results"]] == [0, 1, 2]
    for record, result in zip(records, answer["results"], strict=True):
        assert result["status"] == 201
        decision = Decision.objects.select_related("entry").get(entry__uuid=result["id"])
        assert decision_client_id(decision) == record["client_decision_id"]
        assert bytes(decision.entry.leaf_hash).hex() == result["leaf_hash"]
        assert decision.entry.stream == vault.system_stream(system_id=decision.system_id)


def test_a_json_array_is_recorded_like_ndjson(api_client, decision_request):
    response = post_array(api_client, loans(decision_request, 2))
    assert response.status_code == 200, response.content
    assert [result["status"] for result in response.json()["results"]] == [201, 201]
    assert Decision.objects.count() == 2


def test_a_bulk_decision_reads_back_like_a_single_one(api_client, decision_request):
    single = api_client.post(
        "/api/v1/decisions", decision_request(client_decision_id="solo"), format="json"
    ).json()
    result = post_ndjson(api_client, ndjson([decision_request()])).json()["results"][0]
    mine = api_client.get(f"/api/v1/decisions/{result['id']}").json()
    assert mine["client_decision_id"] == "loan-1"
    assert mine["output"] == {"label": "deny", "score": 0.31}
    assert (mine["occurred_at"], mine["confidence"], mine["solely_automated"]) == (
        "2026-11-26T10:15:00Z",
        0.82,
        False,
    )
    assert mine["model"] == {"name": "loan-scorer", "version": "4.2.0", "declared": False}
    bulk = Decision.objects.get(entry__uuid=result["id"])
    first = Decision.objects.get(entry__uuid=single["id"])
    # The same person, so the same subject (and data key) as the single endpoint's decision.
    assert bulk.subject_id == first.subject_id
    personal = decision_personal_data(bulk)
    assert personal["fields"]["subject_ref"] == "applicant-88231"
    leaf = json.loads(bytes(bulk.entry.canonical))
    single_leaf = json.loads(bytes(first.entry.canonical))
    assert set(leaf["body"]) == set(single_leaf["body"])
    assert set(leaf["body"]["commitments"]) == set(single_leaf["body"]["commitments"])
    assert "applicant-88231" not in bytes(bulk.entry.canonical).decode()


def test_a_bad_record_fails_only_itself_and_names_its_fields(api_client, decision_request):
    records = [
        decision_request(client_decision_id="good-1"),
        decision_request(client_decision_id="bad-1", colour="blue", confidence=3),
        {**decision_request(client_decision_id="bad-2"), "subject_ref": None},
        decision_request(client_decision_id="good-2", subject_ref="applicant-2"),
    ]
    answer = post_array(api_client, records).json()
    statuses = [result["status"] for result in answer["results"]]
    assert statuses == [201, 400, 400, 201]
    assert (answer["created"], answer["failed"]) == (2, 2)
    assert set(answer["results"][1]["error"]["fields"]) == {"colour", "confidence"}
    assert "subject_ref" in answer["results"][2]["error"]["fields"]
    assert {decision_client_id(decision) for decision in Decision.objects.all()} == {
        "good-1",
        "good-2",
    }


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (b'{"client_decision_id": "x", "client_decision_id": "y"}', "duplicate key"),
        (b'{"a": "\\ud800"}', "lone surrogate"),
        (b'{"a": 9007199254740993}', "beyond"),
        (b'{"a": NaN}', "NaN"),
        (b'{"a": ', "malformed JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"\xff{}", "not UTF-8"),
        (b'{"inputs": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2001, "nested deeper than 64"),
        (b'{"inputs": ' + b"[" * 70 + b"]" * 70 + b', "x": "[[[["}', "nested deeper than 64"),
    ],
)
def test_a_record_that_is_not_i_json_fails_only_itself(api_client, decision_request, raw, problem):
    good = json.dumps(decision_request()).encode()
    other = json.dumps(decision_request(client_decision_id="b")).encode()
    body = good + b"\n" + raw + b"\n" + other
    answer = post_ndjson(api_client, body).json()
    assert [result["status"] for result in answer["results"]] == [201, 400, 201]
    assert problem in answer["results"][1]["error"]["message"]


def test_brackets_inside_strings_are_not_nesting(api_client, decision_request):
    record = decision_request(explanation={"text": "[{" * 100})
    answer = post_ndjson(api_client, ndjson([record])).json()
    assert answer["results"][0]["status"] == 201, answer


def test_a_duplicate_key_in_an_array_element_fails_only_that_record(api_client, decision_request):
    good = json.dumps(decision_request()).encode()
    body = b"[" + good + b', {"output": 1, "output": 2}, ' + good + b"]"
    answer = api_client.post(URL, body, content_type="application/json").json()
    assert [result["status"] for result in answer["results"]] == [201, 400, 200]
    assert "duplicate key 'output'" in answer["results"][1]["error"]["message"]


def test_duplicates_within_one_body_make_one_decision(api_client, decision_request):
    records = [
        decision_request(idempotency_key="k-1"),
        decision_request(idempotency_key="k-1"),  # a replay of record 0
        decision_request(output={"label": "approve"}),  # the same client id, other content
        decision_request(client_decision_id="loan-2", idempotency_key="k-1"),  # key reused
        decision_request(client_decision_id="loan-3"),
    ]
    answer = post_ndjson(api_client, ndjson(records)).json()
    results = answer["results"]
    assert [result["status"] for result in results] == [201, 200, 409, 409, 201]
    assert results[1]["id"] == results[0]["id"]
    assert "client_decision_id" in results[2]["error"]["fields"]
    assert "idempotency_key" in results[3]["error"]["fields"]
    assert (answer["created"], answer["replayed"], answer["failed"]) == (2, 1, 2)
    assert Decision.objects.count() == 2


def test_a_resent_body_replays_every_record_and_records_nothing_new(api_client, decision_request):
    body = ndjson(loans(decision_request, 4))
    first = post_ndjson(api_client, body).json()
    entries = Entry.objects.count()
    again = post_ndjson(api_client, body).json()
    assert [result["status"] for result in again["results"]] == [200] * 4
    assert [result["id"] for result in again["results"]] == [r["id"] for r in first["results"]]
    assert Entry.objects.count() == entries
    assert Decision.objects.count() == 4


def test_idempotency_keys_are_shared_with_the_single_endpoint(api_client, decision_request):
    single = api_client.post(
        "/api/v1/decisions", decision_request(), format="json", HTTP_IDEMPOTENCY_KEY="k-9"
    ).json()
    records = [
        decision_request(idempotency_key="k-9"),
        decision_request(client_decision_id="other", idempotency_key="k-9"),
    ]
    results = post_ndjson(api_client, ndjson(records)).json()["results"]
    assert (results[0]["status"], results[0]["id"]) == (200, single["id"])
    assert results[1]["status"] == 409
    assert Decision.objects.count() == 1


def test_supersedes_must_name_a_decision_not_yet_superseded(
    api_client, decision_request, ai_system
):
    original = post_ndjson(api_client, ndjson([decision_request()])).json()["results"][0]["id"]
    unknown = "00000000-0000-4000-8000-000000000000"
    records = [
        decision_request(client_decision_id="fix-1", supersedes=original),
        decision_request(client_decision_id="fix-2", supersedes=original),
        decision_request(client_decision_id="fix-3", supersedes=unknown),
    ]
    results = post_ndjson(api_client, ndjson(records)).json()["results"]
    assert [result["status"] for result in results] == [201, 409, 400]
    assert "supersedes" in results[1]["error"]["fields"]
    assert "supersedes" in results[2]["error"]["fields"]
    fixed = decisions_by_client_id(system=ai_system, client_ids=["fix-1"]).get()
    assert fixed.supersedes.entry.uuid.hex == (original.replace("-", ""))


def test_a_subject_erased_before_gets_a_new_key(api_client, decision_request):
    post_ndjson(api_client, ndjson([decision_request()]))
    old = Decision.objects.get()
    assert subject_erase(subject=old.subject, reason=Erasure.Reason.values[0]) is not None
    assert decision_personal_data(old) is None
    result = post_ndjson(api_client, ndjson([decision_request(client_decision_id="loan-9")]))
    new = Decision.objects.get(entry__uuid=result.json()["results"][0]["id"])
    assert decision_personal_data(new)["fields"]["client_decision_id"] == "loan-9"
    assert decision_personal_data(old) is None
    assert Subject.objects.count() == 1


def test_more_than_10000_records_is_a_413_and_records_nothing(api_client, decision_request):
    good = json.dumps(decision_request()).encode() + b"\n"
    response = post_ndjson(api_client, good + b"{}\n" * 10_000)
    assert response.status_code == 413
    assert "10,000" in response.json()["error"]["message"]
    assert Decision.objects.count() == 0


def test_10000_records_are_accepted(api_client):
    answer = post_ndjson(api_client, b"{}\n" * 10_000).json()
    assert (len(answer["results"]), answer["failed"]) == (10_000, 10_000)
    assert answer["results"][-1]["index"] == 9_999


@override_settings(API_MAX_BODY_BYTES=1_000)
def test_an_over_size_body_is_a_413(api_client, decision_request):
    response = post_ndjson(api_client, ndjson(loans(decision_request, 3)))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"
    assert Decision.objects.count() == 0


@pytest.mark.parametrize(
    ("body", "content_type", "status", "problem"),
    [
        (b"", "application/x-ndjson", 400, "no records"),
        (b"\n\n", "application/x-ndjson", 400, "no records"),
        (b"[]", "application/json", 400, "no records"),
        (b'{"a": 1}', "application/json", 400, "must be an array"),
        (b'[{"a": "]"}', "application/json", 400, "not closed"),
        (b'[{"a": 1}] [', "application/json", 400, "after the end"),
        (b'[{"a": 1},]', "application/json", 400, "comma"),
        (b'[{"a": 1]]', "application/json", 400, "other kind"),
        (b'[{"a": "x', "application/json", 400, "string is not closed"),
        (b"[" + b"[" * 100 + b"]" * 100 + b"]", "application/json", 400, "deeper than"),
        (b"client_decision_id=1", "application/x-www-form-urlencoded", 415, "x-ndjson"),
    ],
)
def test_a_body_that_cannot_be_read_fails_the_request(
    api_client, body, content_type, status, problem
):
    response = api_client.post(URL, body, content_type=content_type)
    assert response.status_code == status, response.content
    assert problem in response.json()["error"]["message"]
    assert Decision.objects.count() == 0


def test_a_key_is_required(client, decision_request):
    response = client.post(URL, ndjson([decision_request()]), content_type="application/x-ndjson")
    assert response.status_code in (401, 403)
    assert Decision.objects.count() == 0


def test_all_receipts_of_a_bulk_verify_after_a_seal(api_client, decision_request, seal, tsa_ca_pem):
    answer = post_ndjson(api_client, ndjson(loans(decision_request, 12))).json()
    seal()
    for result in answer["results"]:
        receipt = api_client.get(f"/api/v1/entries/{result['id']}/receipt").json()
        assert receipt["entry"]["leaf_hash"] == result["leaf_hash"]
        report = receipt_verify(receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem)
        assert report.ok, report.steps


def test_the_schema_documents_the_endpoint_and_its_policy(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    operation = schema["paths"]["/api/v1/decisions/bulk"]["post"]
    assert set(operation["requestBody"]["content"]) == {"application/x-ndjson", "application/json"}
    assert "fails only itself" in operation["description"]
    assert "one durable transaction" in operation["description"]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(alphabet='ab"\\[]{},\n'),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(alphabet='k"]{\\', max_size=3), children, max_size=3)
    ),
    max_leaves=8,
)


@given(elements=st.lists(json_values, max_size=6), read_size=st.integers(1, 16))
@settings(max_examples=150, deadline=None)
def test_an_array_read_in_any_block_size_yields_its_elements(elements, read_size):
    body = json.dumps(elements, indent=1).encode()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_bulk, "READ_SIZE", read_size)
        found = [json.loads(raw) for raw in api_bulk.json_array_records(io.BytesIO(body))]
    assert found == elements


@given(
    lines=st.lists(st.text(alphabet='ab {}"\t', max_size=12), max_size=8),
    trailing_newline=st.booleans(),
    read_size=st.integers(1, 16),
)
@settings(max_examples=150, deadline=None)
def test_ndjson_read_in_any_block_size_yields_its_non_blank_lines(
    lines, trailing_newline, read_size
):
    body = "\n".join(lines).encode() + (b"\n" if trailing_newline else b"")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(api_bulk, "READ_SIZE", read_size)
        found = list(api_bulk.ndjson_records(io.BytesIO(body)))
    assert found == [line.encode() for line in lines if line.strip()]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_bulks_with_the_same_records_make_each_decision_once(decision_request):
    from tests.audit.conftest import AISystemFactory

    system = AISystemFactory()
    serializer = api_bulk.BulkDecisionSerializer()
    records = [
        decision_request(client_decision_id=f"race-{n}", idempotency_key=f"race-key-{n}")
        for n in range(50)
    ]
    items = [
        api_bulk.bulk_item(n, json.dumps(record).encode(), serializer)
        for n, record in enumerate(records)
    ]
    answers: list[list] = []
    barrier = threading.Barrier(2)

    def send() -> None:
        try:
            barrier.wait()
            answers.append(decisions_bulk_record(system=system, items=items))
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 2
    ids = [[result.id for result in answer] for answer in answers]
    assert ids[0] == ids[1]
    assert (
        sorted(result.status for answer in answers for result in answer) == [200] * 50 + [201] * 50
    )
    assert Decision.objects.filter(system=system).count() == 50


def test_the_service_takes_items_without_http(ai_system, decision_request):
    serializer = api_bulk.BulkDecisionSerializer()
    items = [
        api_bulk.bulk_item(0, json.dumps(decision_request()).encode(), serializer),
        BulkItem(1, error={"code": "x", "message": "refused upstream", "fields": {}}),
    ]
    results = decisions_bulk_record(system=ai_system, items=items)
    assert [result.status for result in results] == [201, 400]
    assert results[1].as_dict()["error"]["message"] == "refused upstream"
