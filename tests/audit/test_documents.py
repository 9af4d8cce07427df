"""POST /api/v1/documents and the public lookup GET /api/v1/documents/{sha256}, as AI systems,
their auditors and the public use them."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient
from veridict_verify.receipt import receipt_verify

from audit.models import AISystem, Document
from audit.services import documents
from audit.services.systems import api_key_create
from audit.uploads import HashingUploadHandler
from tests.audit.conftest import AISystemFactory
from timestamping import keys
from timestamping.models import Entry

pytestmark = pytest.mark.django_db

VERIFY = Path(sys.executable).parent / "veridict-verify"
PDF = b"%PDF-1.7\n" + bytes(range(256)) * 40 + b"\n%%EOF\n"


def upload(client: APIClient, content: bytes = PDF, name: str = "report.pdf", **fields):
    document = SimpleUploadedFile(name, content, content_type="application/pdf")
    return client.post("/api/v1/documents", {"file": document, **fields}, format="multipart")


def register(client: APIClient, body: dict):
    return client.post("/api/v1/documents", json.dumps(body), content_type="application/json")


def leaf_body(answer: dict) -> dict:
    return json.loads(bytes(Entry.objects.get(uuid=answer["id"]).canonical))["body"]


def key_client(system: AISystem) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=system, name='t')}")
    return client


@pytest.fixture
def media_root(settings, tmp_path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def decision_id(api_client, decision_request) -> str:
    response = api_client.post(
        "/api/v1/decisions", json.dumps(decision_request()), content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]


# --- Registering ---------------------------------------------------------------------------------


def test_an_uploaded_file_is_registered_under_its_sha256(api_client, ai_system, media_root):
    response = upload(api_client)
    assert response.status_code == 201, response.content
    answer = response.json()
    digest = hashlib.sha256(PDF).hexdigest()
    assert answer["sha256"] == digest
    assert answer["stored"] is False
    assert answer["receipt_url"].endswith(f"/api/v1/entries/{answer['id']}/receipt")
    entry = Entry.objects.get(uuid=answer["id"])
    assert answer["leaf_hash"] == bytes(entry.leaf_hash).hex()
    assert answer["set"] == entry.set_note
    assert leaf_body(answer) == {
        "type": "document",
        "system": ai_system.slug,
        "sha256": digest,
        "size": len(PDF),
        "media_type": "application/pdf",
        "informed": [],
    }


def test_the_file_is_kept_only_when_the_system_stores_documents(api_client, ai_system, media_root):
    discarded = upload(api_client, b"not kept").json()
    assert discarded["stored"] is False
    assert not Document.objects.get(sha256=discarded["sha256"]).file
    assert not [path for path in media_root.rglob("*") if path.is_file()]

    ai_system.store_documents = True
    ai_system.save()
    kept = upload(api_client, PDF, name="Jane Doe medical report.pdf").json()
    assert kept["stored"] is True
    stored = Document.objects.get(sha256=kept["sha256"]).file
    assert (media_root / stored.name).read_bytes() == PDF
    assert "Jane" not in stored.name, "the client's file name may identify someone"


def test_a_digest_alone_is_registered_from_json(api_client, ai_system):
    digest = hashlib.sha256(b"a model card").hexdigest()
    response = register(
        api_client, {"sha256": digest.upper(), "size": 12, "media_type": "text/markdown"}
    )
    assert response.status_code == 201, response.content
    answer = response.json()
    assert (answer["sha256"], answer["stored"]) == (digest, False)
    body = leaf_body(answer)
    assert (body["sha256"], body["size"], body["media_type"]) == (digest, 12, "text/markdown")


def test_registering_the_same_digest_again_answers_200_with_the_first_registration(api_client):
    first = upload(api_client)
    again_uploaded = upload(api_client, name="renamed.pdf")
    again_registered = register(api_client, {"sha256": hashlib.sha256(PDF).hexdigest()})
    assert (first.status_code, again_uploaded.status_code) == (201, 200)
    assert again_registered.status_code == 200
    assert again_uploaded.json() == first.json() == again_registered.json()
    assert Entry.objects.filter(kind="document").count() == 1


def test_a_file_uploaded_after_its_digest_was_registered_is_kept(api_client, ai_system, media_root):
    ai_system.store_documents = True
    ai_system.save()
    first = register(api_client, {"sha256": hashlib.sha256(PDF).hexdigest()}).json()
    assert first["stored"] is False
    again = upload(api_client)
    assert again.status_code == 200
    assert again.json()["id"] == first["id"] and again.json()["stored"] is True
    stored = Document.objects.get(sha256=first["sha256"]).file
    assert (media_root / stored.name).read_bytes() == PDF


def test_a_registration_that_loses_a_race_answers_with_the_winner_and_keeps_the_file(
    ai_system, media_root, monkeypatch
):
    ai_system.store_documents = True
    ai_system.save()
    digest = hashlib.sha256(PDF).hexdigest()
    store = documents._file_store
    winners = []

    def racing(content):
        # A concurrent request registers the digest (without a file) after this one found none,
        # while it stores the file.
        winners.append(documents._document_create(ai_system, digest, None, None, False, [], ""))
        return store(content)

    monkeypatch.setattr(documents, "_file_store", racing)
    # As the upload handler leaves it: a temporary file that storage moves, not copies.
    handler = HashingUploadHandler(keep=True)
    handler.new_file("file", "report.pdf", "application/pdf", len(PDF))
    handler.receive_data_chunk(PDF, 0)
    upload = handler.file_complete(len(PDF))
    document, created = documents.document_register(system=ai_system, sha256=digest, content=upload)
    assert not created and document.pk == winners[0].pk
    assert Document.objects.count() == Entry.objects.filter(kind="document").count() == 1
    assert (media_root / Document.objects.get().file.name).read_bytes() == PDF
    assert len([path for path in media_root.rglob("*") if path.is_file()]) == 1


# --- Links to decisions --------------------------------------------------------------------------


def test_a_document_is_linked_to_the_decisions_it_informed(
    api_client, decision_request, decision_id
):
    second = api_client.post(
        "/api/v1/decisions",
        json.dumps(decision_request(client_decision_id="loan-2")),
        content_type="application/json",
    ).json()["id"]
    # Form values may repeat and be comma-separated.
    response = upload(api_client, decisions=[f"{decision_id}, {second}", decision_id])
    assert response.status_code == 201, response.content
    answer = response.json()
    assert answer["decisions"] == sorted([decision_id, second])
    assert leaf_body(answer)["informed"] == sorted([decision_id, second])
    document = Document.objects.get(entry__uuid=answer["id"])
    assert {str(d.entry.uuid) for d in document.decisions.all()} == {decision_id, second}


def test_json_registration_links_decisions_given_as_a_list(api_client, decision_id):
    response = register(api_client, {"sha256": "ab" * 32, "decisions": [decision_id]})
    assert response.status_code == 201, response.content
    assert leaf_body(response.json())["informed"] == [decision_id]


def test_another_systems_decision_cannot_be_linked(decision_id):
    stranger = key_client(AISystemFactory())
    response = register(stranger, {"sha256": "ab" * 32, "decisions": [decision_id]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert decision_id in error["fields"]["decisions"][0]
    assert not Document.objects.exists()


def test_a_decision_id_that_is_not_a_uuid_is_refused(api_client):
    response = upload(api_client, decisions="loan-1")
    assert response.status_code == 400
    assert "decisions" in response.json()["error"]["fields"]


# --- Private documents ---------------------------------------------------------------------------


def test_a_private_document_leaves_no_digest_in_the_leaf(api_client, ai_system):
    answer = upload(api_client, private="true").json()
    digest = hashlib.sha256(PDF).hexdigest()
    canonical = bytes(Entry.objects.get(uuid=answer["id"]).canonical).decode()
    assert digest not in canonical
    body = json.loads(canonical)["body"]
    assert "sha256" not in body
    salt = bytes(Document.objects.get(entry__uuid=answer["id"]).salt)
    assert len(salt) == 32
    assert body["commitment"] == hashlib.sha256(salt + bytes.fromhex(digest)).hexdigest()


def test_the_salt_is_in_the_receipt_for_its_key_and_staff_only(
    api_client, ai_system, django_user_model
):
    ai_system.is_public = True
    ai_system.save()
    answer = upload(api_client, private="true").json()
    salt = bytes(Document.objects.get(entry__uuid=answer["id"]).salt)

    own = api_client.get(answer["receipt_url"]).json()
    assert base64.b64decode(own["document"]["salt_b64"]) == salt
    # Staff whose scope covers the system (review.permissions): every system here.
    auditor = django_user_model.objects.create_user("auditor", is_staff=True)
    auditor.user_permissions.add(Permission.objects.get(codename="review_all_systems"))
    staff = APIClient()
    staff.force_login(auditor)
    assert base64.b64decode(staff.get(answer["receipt_url"]).json()["document"]["salt_b64"]) == salt
    # Staff out of scope (no system assigned) read the public receipt only.
    outside = APIClient()
    outside.force_login(django_user_model.objects.create_user("other", is_staff=True))
    assert "document" not in outside.get(answer["receipt_url"]).json()
    public = APIClient().get(answer["receipt_url"])
    assert public.status_code == 200
    assert "document" not in public.json()
    stranger = key_client(AISystemFactory(is_public=True)).get(answer["receipt_url"])
    assert stranger.status_code != 200 or "document" not in stranger.json()


def test_a_public_documents_receipt_has_no_document_field(api_client):
    answer = upload(api_client).json()
    assert "document" not in api_client.get(answer["receipt_url"]).json()


def verify_cli(receipt: Path, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VERIFY), str(receipt), "--key", str(keys.verifier_key()), "--json"]
        + ["--document", str(document)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_veridict_verify_checks_a_private_document_against_its_commitment(
    api_client, seal, tmp_path
):
    answer = upload(api_client, private="true").json()
    seal()
    receipt = tmp_path / "receipt.json"
    receipt.write_text(json.dumps(api_client.get(answer["receipt_url"]).json()))
    right, wrong = tmp_path / "report.pdf", tmp_path / "other.pdf"
    right.write_bytes(PDF)
    wrong.write_bytes(PDF + b" ")

    passed = verify_cli(receipt, right)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "salted commitment" in json.loads(passed.stdout)["steps"][0]["detail"]
    failed = verify_cli(receipt, wrong)
    assert failed.returncode == 1
    step = json.loads(failed.stdout)["steps"][-1]
    assert (step["name"], step["status"]) == ("leaf", "failed")
    assert "commitment" in step["detail"]


def test_verifying_a_private_document_without_its_salt_says_so(api_client, ai_system):
    ai_system.is_public = True
    ai_system.save()
    answer = upload(api_client, private="true").json()
    public_receipt = APIClient().get(answer["receipt_url"]).json()
    report = receipt_verify(
        public_receipt, keys=[keys.verifier_key()], document_sha256=hashlib.sha256(PDF).digest()
    )
    assert report.failed is not None and report.failed.name == "leaf"
    assert "document.salt_b64" in report.failed.detail


def test_a_decisions_receipt_checked_with_a_document_registers_no_document(api_client, decision_id):
    receipt = api_client.get(f"/api/v1/entries/{decision_id}/receipt").json()
    report = receipt_verify(receipt, keys=[keys.verifier_key()], document_sha256=b"\0" * 32)
    assert report.failed is not None and report.failed.name == "leaf"
    assert "registers no document" in report.failed.detail


# --- Public lookup -------------------------------------------------------------------------------


def lookup(client: APIClient, digest: str, **extra):
    return client.get(f"/api/v1/documents/{digest}", **extra)


def test_anyone_finds_a_public_document_of_a_public_system_and_where_it_is_sealed(
    api_client, ai_system, seal
):
    ai_system.is_public = True
    ai_system.save()
    answer = upload(api_client).json()
    digest = answer["sha256"]

    pending = lookup(APIClient(), digest)
    assert pending.status_code == 200, pending.content
    [registration] = pending.json()["registrations"]
    assert registration["id"] == answer["id"]
    assert registration["system"] == {"slug": ai_system.slug, "name": ai_system.name}
    assert registration["registered_at"] == answer["received_at"]
    assert (registration["sealed"], registration["batch"], registration["leaf_index"]) == (
        False,
        None,
        None,
    )
    assert registration["receipt_url"] == answer["receipt_url"]

    seal()
    [sealed] = lookup(APIClient(), digest.upper()).json()["registrations"]
    receipt = APIClient().get(answer["receipt_url"]).json()
    assert sealed["sealed"] is True
    assert sealed["batch"] == receipt["batch"]["number"]
    assert sealed["leaf_index"] == receipt["proof"]["leaf_index"]


def test_the_public_lookup_hides_private_documents_and_private_systems(api_client, ai_system):
    ai_system.is_public = True
    ai_system.save()
    secret = upload(api_client, b"private minutes", private="true").json()["sha256"]
    hidden_system = AISystemFactory(is_public=False)
    internal = register(key_client(hidden_system), {"sha256": "cd" * 32}).json()["sha256"]

    for digest in (secret, internal):
        response = lookup(APIClient(), digest)
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert lookup(key_client(AISystemFactory(is_public=True)), internal).status_code == 404


def test_a_system_finds_its_own_private_documents_with_its_key(api_client, ai_system):
    digest = upload(api_client, b"private minutes", private="true").json()["sha256"]
    [registration] = lookup(api_client, digest).json()["registrations"]
    assert registration["system"]["slug"] == ai_system.slug


def test_every_visible_registration_of_a_digest_is_listed(api_client, ai_system):
    ai_system.is_public = True
    ai_system.save()
    other = AISystemFactory(is_public=True)
    first = register(api_client, {"sha256": "ef" * 32}).json()
    second = register(key_client(other), {"sha256": "ef" * 32}).json()
    registrations = lookup(APIClient(), "ef" * 32).json()["registrations"]
    assert [r["id"] for r in registrations] == [first["id"], second["id"]]


def test_the_lookup_refuses_what_is_not_a_digest(db):
    response = lookup(APIClient(), "not-a-digest")
    assert response.status_code == 400
    assert "sha256" in response.json()["error"]["fields"]


def test_the_lookup_is_rate_limited_per_client(db, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {
            **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"],
            "document_lookup": "2/min",
        },
    }
    # A fresh address: the throttle's cache may be a Redis shared with earlier runs.
    address = f"10.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}.7"
    answers = [lookup(APIClient(), "ab" * 32, REMOTE_ADDR=address) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [404, 404, 429]
    assert int(answers[-1]["Retry-After"]) > 0
    assert answers[-1].json()["error"]["code"] == "throttled"


# --- Bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "sha256"),
        ({"sha256": "xyz"}, "sha256"),
        ({"sha256": "ab" * 31}, "sha256"),
        ({"sha256": "ab" * 32, "title": "minutes"}, "title"),
        ({"sha256": "ab" * 32, "size": -1}, "size"),
        ({"sha256": "ab" * 32, "media_type": "pdf"}, "media_type"),
        ({"sha256": "ab" * 32, "private": "maybe"}, "private"),
        ({"sha256": "ab" * 32, "decisions": {"id": 1}}, "decisions"),
    ],
)
def test_bad_json_registrations_answer_400_naming_the_field(api_client, body, field):
    response = register(api_client, body)
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert not Entry.objects.exists()


def test_a_form_without_a_file_names_the_file(api_client):
    response = api_client.post("/api/v1/documents", {"private": "true"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


def test_an_unknown_form_field_is_named(api_client):
    response = upload(api_client, title="Jane's file")
    assert response.status_code == 400
    assert "title" in response.json()["error"]["fields"]
    assert not Entry.objects.exists()


def test_an_upload_that_does_not_match_the_expected_digest_is_refused(api_client):
    response = upload(api_client, sha256="ab" * 32)
    assert response.status_code == 400
    assert hashlib.sha256(PDF).hexdigest() in response.json()["error"]["fields"]["sha256"][0]


def test_two_files_in_one_request_are_refused(api_client):
    files = [SimpleUploadedFile(n, b"x" + n.encode()) for n in ("a.txt", "b.txt")]
    response = api_client.post("/api/v1/documents", {"file": files}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["error"]["fields"]


def test_a_malformed_multipart_body_is_a_400(api_client):
    response = api_client.generic(
        "POST",
        "/api/v1/documents",
        b'--XYZ\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nabc',
        content_type="multipart/form-data; boundary=XYZ",
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"]


def test_documents_need_an_ai_systems_key(db):
    response = register(APIClient(), {"sha256": "ab" * 32})
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"]


# --- Memory: a large upload through a real server ------------------------------------------------

UPLOAD_MB = 256
GROWTH_LIMIT_MB = 64


def database_url() -> str:
    """The test database, for the server process (pytest-django renamed it)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{Path(db['NAME']).resolve()}"
    user = quote(db["USER"] or "", safe="")
    password = f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = db["HOST"] or "localhost"
    return f"postgres://{user}{password}@{host}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc: not Linux?")


def multipart_upload(port: int, key: str, blocks: Iterator[bytes], size: int) -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from blocks
        yield tail

    server = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        server.request(
            "POST",
            "/api/v1/documents",
            body=body(),
            headers={
                "Authorization": f"Api-Key {key}",
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
        response = server.getresponse()
        return response.status, json.loads(response.read())
    finally:
        server.close()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("store_documents", [False, True], ids=["discarded", "stored"])
def test_a_large_upload_grows_the_server_by_far_less_than_its_size(tmp_path, store_documents):
    system = AISystemFactory(store_documents=store_documents)
    key = api_key_create(system=system, name="upload")
    port = free_port()
    environment = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_MEDIA_ROOT": str(tmp_path / "media"),
        "DJANGO_SECURE_SSL_REDIRECT": "false",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "veridict.wsgi", "--bind", f"127.0.0.1:{port}"]
        + ["--workers", "1", "--timeout", "120"],
        cwd=settings.BASE_DIR,
        env=environment,
        stdout=(tmp_path / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, "the server did not start within 30 s"
                time.sleep(0.1)
        # Warmed up by a small upload, so that the baseline includes every import and cache.
        status, _ = multipart_upload(port, key, iter([b"warm-up"]), len(b"warm-up"))
        assert status == 201
        children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
        [worker] = [int(pid) for pid in children]
        before = peak_rss_mb(worker)

        block = os.urandom(1 << 20)
        expected = hashlib.sha256()
        for _ in range(UPLOAD_MB):
            expected.update(block)
        started = time.monotonic()
        status, answer = multipart_upload(
            port, key, (block for _ in range(UPLOAD_MB)), UPLOAD_MB << 20
        )
        seconds = time.monotonic() - started
        growth = peak_rss_mb(worker) - before
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert status == 201, answer
    assert answer["sha256"] == expected.hexdigest()
    assert answer["stored"] is store_documents
    assert growth < GROWTH_LIMIT_MB, f"peak RSS grew by {growth:.1f} MB"
    stored = tmp_path / "media" / Document.objects.get(sha256=answer["sha256"]).file.name
    assert stored.is_file() is store_documents
    if store_documents:
        assert stored.stat().st_size == UPLOAD_MB << 20
    print(f"{UPLOAD_MB} MB in {seconds:.1f} s; peak RSS grew by {growth:.1f} MB")
