"""Erasing a subject on request: POST /api/v1/subjects/erase, as a compliance officer uses it."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from pathlib import Path
from unittest import mock

import pytest
import rfc8785
from django.contrib.auth.models import Permission, User
from django.core.files.base import ContentFile
from django.db import connection
from django.test import Client
from veridict_verify.receipt import receipt_verify

from audit import vault
from audit.models import Decision, Document, Erasure, Subject
from audit.services import decisions as decisions_service
from audit.services.subjects import (
    decision_personal_data,
    erasure_decisions_opening,
    subject_erase,
)
from timestamping import keys
from timestamping.models import Entry
from timestamping.selectors import receipt_get
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db

URL = "/api/v1/subjects/erase"


def record(api_client, body) -> dict:
    response = api_client.post("/api/v1/decisions", body, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def staff_user(*, can_erase: bool = True, is_staff: bool = True) -> User:
    user = User.objects.create_user(f"officer-{secrets.token_hex(4)}", is_staff=is_staff)
    if can_erase:
        user.user_permissions.add(Permission.objects.get(codename="erase_subject"))
    return user


@pytest.fixture
def officer_client() -> Client:
    client = Client()
    client.force_login(staff_user())
    return client


def erase(client, **body):
    return client.post(URL, json.dumps(body), content_type="application/json")


def test_an_erased_subjects_receipts_still_verify_and_its_data_no_longer_decrypts(
    api_client, decision_request, ai_system, officer_client, client, seal, tsa_ca_pem
):
    first = record(api_client, decision_request())
    second = record(api_client, decision_request(client_decision_id="loan-2"))
    other = record(api_client, decision_request(client_decision_id="loan-3", subject_ref="b-7"))
    seal()

    response = erase(
        officer_client, system=ai_system.slug, subject_ref="applicant-88231", reason="Art. 17"
    )

    assert response.status_code == 200, response.content
    answer = response.json()
    assert answer["decisions"] == 2
    seal()
    erasure_entry = Entry.objects.get(uuid=answer["erasure_entry"])
    for entry in [*Entry.objects.filter(uuid__in=[first["id"], second["id"]]), erasure_entry]:
        report = receipt_verify(
            receipt_get(entry=entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
        )
        assert report.ok, report
    for erased in (first, second):
        decision = Decision.objects.get(entry__uuid=erased["id"])
        assert decision_personal_data(decision) is None
        page = client.get(erased["subject_url"].split("testserver")[1])
        assert "has been erased" in page.content.decode()
        assert "debt-to-income ratio" not in page.content.decode()
    kept = decision_personal_data(Decision.objects.get(entry__uuid=other["id"]))
    assert kept["fields"]["subject_ref"] == "b-7"
    leaf = json.loads(bytes(erasure_entry.canonical))
    assert erasure_entry.kind == "erasure"
    assert "decisions" not in leaf["body"]
    assert leaf["body"]["reason"] == "request"
    for erased in (first, second):
        assert erased["id"] not in bytes(erasure_entry.canonical).decode()
    erasure = Erasure.objects.get(entry=erasure_entry)
    opening = erasure_decisions_opening(erasure=erasure)
    assert opening["decisions"] == sorted([first["id"], second["id"]])
    salt = base64.b64decode(opening["salt_b64"])
    # As docs/receipts.md tells a holder of the opening to check it.
    committed = hashlib.sha256(salt + rfc8785.dumps(opening["decisions"])).hexdigest()
    assert leaf["body"]["decisions_commitment"] == committed


def test_the_erasure_reason_is_kept_but_only_committed_in_the_leaf(
    api_client, decision_request, ai_system, officer_client
):
    record(api_client, decision_request())
    note = "asked by Jane Roe on 2026-11-20"
    answer = erase(
        officer_client, system=ai_system.slug, subject_ref="applicant-88231", reason=note
    ).json()
    erasure = Erasure.objects.get(entry__uuid=answer["erasure_entry"])
    canonical = bytes(erasure.entry.canonical).decode()
    assert "Jane Roe" not in canonical
    assert erasure.note == note
    assert json.loads(canonical)["body"]["note"] == vault.commitment(
        salt=bytes(erasure.note_salt), value=note
    )


def test_erasing_again_answers_the_same_erasure_and_appends_nothing(
    api_client, decision_request, ai_system, officer_client
):
    record(api_client, decision_request())
    body = {"system": ai_system.slug, "subject_ref": "applicant-88231", "reason": "Art. 17"}
    first = erase(officer_client, **body)
    entries = Entry.objects.count()
    again = erase(officer_client, **body)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert Entry.objects.count() == entries


def test_a_decision_after_an_erasure_is_readable_and_the_erased_ones_stay_erased(
    api_client, decision_request, ai_system, officer_client
):
    before = record(api_client, decision_request())
    erase(officer_client, system=ai_system.slug, subject_ref="applicant-88231", reason="Art. 17")
    after = record(api_client, decision_request(client_decision_id="loan-2"))
    assert decision_personal_data(Decision.objects.get(entry__uuid=before["id"])) is None
    readable = decision_personal_data(Decision.objects.get(entry__uuid=after["id"]))
    assert readable["fields"]["client_decision_id"] == "loan-2"


def test_erasure_leaves_the_stored_files_of_linked_documents(
    api_client, decision_request, ai_system, officer_client, settings, tmp_path: Path
):
    settings.MEDIA_ROOT = tmp_path
    answer = record(api_client, decision_request())
    entry, _ = entry_append(
        kind="document", envelope={"type": "document", "system": ai_system.slug, "sha256": "0" * 64}
    )
    document = Document.objects.create(
        system=ai_system, entry=entry, sha256="0" * 64, file=ContentFile(b"%PDF", name="cv.pdf")
    )
    document.decisions.add(Decision.objects.get(entry__uuid=answer["id"]))

    erase(officer_client, system=ai_system.slug, subject_ref="applicant-88231", reason="Art. 17")

    document.refresh_from_db()
    assert document.file and Path(document.file.path).read_bytes() == b"%PDF"


@pytest.mark.parametrize(
    ("is_staff", "can_erase"), [(True, False), (False, True)], ids=["no-permission", "not-staff"]
)
def test_erasing_without_staff_and_the_permission_is_a_403(
    api_client, decision_request, ai_system, is_staff, can_erase
):
    record(api_client, decision_request())
    client = Client()
    client.force_login(staff_user(can_erase=can_erase, is_staff=is_staff))
    response = erase(client, system=ai_system.slug, subject_ref="applicant-88231", reason="x")
    assert response.status_code == 403
    assert "erase_subject" in response.json()["error"]["message"]
    assert Subject.objects.get().wrapped_key is not None


def test_an_ai_systems_key_or_no_login_cannot_erase(api_client, decision_request, ai_system):
    record(api_client, decision_request())
    body = {"system": ai_system.slug, "subject_ref": "applicant-88231", "reason": "x"}
    assert api_client.post(URL, body, format="json").status_code == 403
    assert erase(Client(), **body).status_code == 403
    assert Subject.objects.get().wrapped_key is not None


def test_the_session_must_send_its_csrf_token(api_client, decision_request, ai_system):
    record(api_client, decision_request())
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff_user())
    body = json.dumps({"system": ai_system.slug, "subject_ref": "applicant-88231", "reason": "x"})

    refused = client.post(URL, body, content_type="application/json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["error"]["message"]
    assert Subject.objects.get().wrapped_key is not None

    token = secrets.token_hex(16)
    client.cookies["csrftoken"] = token
    accepted = client.post(URL, body, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert accepted.status_code == 200, accepted.content


def test_an_unknown_subject_or_system_is_a_404_naming_the_field(
    api_client, decision_request, ai_system, officer_client
):
    record(api_client, decision_request())
    unknown_subject = erase(officer_client, system=ai_system.slug, subject_ref="nobody", reason="x")
    unknown_system = erase(officer_client, system="nope", subject_ref="applicant-88231", reason="x")
    assert (unknown_subject.status_code, unknown_system.status_code) == (404, 404)
    assert "subject_ref" in unknown_subject.json()["error"]["fields"]
    assert "system" in unknown_system.json()["error"]["fields"]


def test_bad_input_is_a_400_naming_each_field(officer_client):
    response = erase(officer_client, system="not a slug", subject_ref="", colour="blue")
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"system", "subject_ref", "reason", "colour"}
    malformed = officer_client.post(URL, b'{"system": 1, "system": 2}', "application/json")
    assert malformed.status_code == 400
    assert "duplicate key" in malformed.json()["error"]["message"]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_decision_committing_while_its_subject_is_erased_is_named_by_the_erasure(
    api_client, decision_request
):
    record(api_client, decision_request())
    subject = Subject.objects.get()
    appended = threading.Event()
    append = decisions_service.entry_append

    def append_then_linger(**kwargs):
        entry = append(**kwargs)
        if kwargs["kind"] == "decision":
            appended.set()
            time.sleep(0.5)  # the decision's transaction is open: the erasure must wait for it
        return entry

    answers = []

    def record_second():
        try:
            answers.append(
                api_client.post(
                    "/api/v1/decisions",
                    decision_request(client_decision_id="loan-2"),
                    format="json",
                )
            )
        finally:
            connection.close()

    with mock.patch.object(decisions_service, "entry_append", append_then_linger):
        recorder = threading.Thread(target=record_second)
        recorder.start()
        assert appended.wait(10)
        erasure = subject_erase(subject=subject, reason="request")
        recorder.join(10)

    assert answers[0].status_code == 201
    assert erasure is not None and erasure.decisions == 2
    acknowledged = Decision.objects.get(entry__uuid=answers[0].json()["id"])
    leaf = json.loads(bytes(erasure.entry.canonical))["body"]
    assert str(acknowledged.entry.uuid) in erasure.decision_ids
    assert leaf["decisions_commitment"] == vault.commitment(
        salt=bytes(erasure.decisions_salt), value=erasure.decision_ids
    )
