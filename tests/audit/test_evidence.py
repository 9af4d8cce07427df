"""Evidence packages (docs/evidence.md): one system's log over whole batches, with openings an
auditor checks against the leaves, and nothing of another system."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from datetime import UTC, date, datetime
from typing import Any

import pyrage
import pytest
import rfc8785
from django.conf import settings
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient
from veridict_verify import merkle

from audit import vault
from audit.models import AISystem, Decision
from audit.serializers import DecisionSerializer
from audit.services.decisions import decision_record, outcome_record
from audit.services.evidence import EvidenceOpenings, evidence_write
from audit.services.subjects import subject_erase
from audit.services.systems import api_key_create
from review.models import ReviewSettings
from review.services import contest_record, review_claim, review_confirm
from tests.audit.conftest import AISystemFactory

pytestmark = pytest.mark.django_db

RATIONALE = "Checked the payslip: income as stated."
STATEMENT = "My income was wrong in the application."


def _day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(hour=12, tzinfo=UTC)


@pytest.fixture
def sealed_on(seal, monkeypatch):
    """Seals what is pending as a batch sealed at noon UTC of that day."""

    def run(day: str) -> None:
        with monkeypatch.context() as patch:
            patch.setattr(timezone, "now", lambda: _day(day))
            seal()

    return run


@pytest.fixture
def record(decision_request):
    counter = iter(range(1, 10_000))

    def make(system: AISystem, **changes: Any) -> Decision:
        number = next(counter)
        changes.setdefault("client_decision_id", f"loan-{number}")
        changes.setdefault("subject_ref", f"applicant-{number}")
        incoming = DecisionSerializer(data=decision_request(**changes))
        incoming.is_valid(raise_exception=True)
        decision, _ = decision_record(system=system, data=incoming.validated_data)
        return decision

    return make


@pytest.fixture
def reviewer(ai_system) -> User:
    user = User.objects.create_user("rita", password="x", is_staff=True)
    user.groups.add(Group.objects.get(name="reviewer"))
    ReviewSettings.objects.get_or_create(system=ai_system)[0].reviewers.add(user)
    return User.objects.get(pk=user.pk)


@pytest.fixture
def history(ai_system, record, sealed_on, reviewer):
    """Four batches on four days; another system's entries in each; reviews, a contest and an
    erasure in the third. The range 2026-01-15..2026-02-10 covers batches 2 and 3."""
    other = AISystemFactory()
    before = record(ai_system)
    record(other)
    sealed_on("2026-01-10")
    settings_of = ReviewSettings.objects.get(system=ai_system)
    settings_of.sampling_rate = 1.0  # every decision of the range goes to the queue
    settings_of.save()
    reviewed = record(ai_system)
    record(other)
    contested = record(ai_system, explanation={"main_factors": ["income"]})
    outcome_record(decision=before, actual={"label": "repaid"}, observed_at=_day("2026-01-19"))
    sealed_on("2026-01-20")
    item = review_claim(item=reviewed.review_item, reviewer=reviewer)
    review_confirm(item=item, reviewer=reviewer, rationale=RATIONALE)
    contest_record(decision=contested, statement=STATEMENT)
    record(other)
    subject_erase(subject=contested.subject, reason="request")
    last_in_range = record(ai_system)
    sealed_on("2026-02-05")
    after = record(ai_system)
    sealed_on("2026-02-15")
    return {
        "before": before,
        "reviewed": reviewed,
        "contested": contested,
        "last_in_range": last_in_range,
        "after": after,
    }


def _export(system: AISystem, **openings: bool) -> list[dict[str, Any]]:
    out = io.BytesIO()
    evidence_write(
        system=system,
        date_from=date(2026, 1, 15),
        date_to=date(2026, 2, 10),
        openings=EvidenceOpenings(**openings),
        out=out,
    )
    return _parsed(out.getvalue())


def _parsed(package: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in gzip.decompress(package).splitlines()]


def _body(line: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(line["canonical_b64"]))


def _header_stream(batch_line: dict[str, Any], stream: str) -> dict[str, Any]:
    header = json.loads(base64.b64decode(batch_line["header_b64"]))
    return next(item for item in header["streams"] if item["id"] == stream)


def _entries_by_decision(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        _body(line)["id"]: line
        for line in lines
        if line["type"] == "entry" and _body(line)["kind"] == "decision"
    }


def test_a_package_holds_header_batches_entries_and_end_in_order(ai_system, history):
    lines = _export(ai_system)
    types = [line["type"] for line in lines]
    assert types[0] == "header" and types[-1] == "end"
    assert types == ["header"] + ["batch"] * 3 + ["entry"] * (len(lines) - 5) + ["end"]
    header = lines[0]
    stream = vault.system_stream(system_id=ai_system.pk)
    assert header["version"] == "veridict.evidence/v1"
    assert header["system"] == {"slug": ai_system.slug, "name": ai_system.name, "stream": stream}
    assert header["range"] == {"from": "2026-01-15", "to": "2026-02-10"}
    assert header["openings"] == {"explanation": False, "inputs": False}
    assert header["verifier_keys"] and "BEGIN CERTIFICATE" in header["tsa_ca_pem"]
    end = lines[-1]
    assert end["lines"] == len(lines) - 1
    assert end["entries"] == header["end"]["size"] - header["start"]["size"] == len(lines) - 5


def test_the_range_starts_and_ends_at_batch_boundaries(ai_system, history):
    lines = _export(ai_system)
    header = lines[0]
    stream = header["system"]["stream"]
    batches = [line for line in lines if line["type"] == "batch"]
    # Batch 1 (before the range) states size a; batches 2 and 3 are the range; 4 is after it.
    assert [line["number"] for line in batches] == [1, 2, 3]
    assert header["start"]["batch"] == 1 and header["end"]["batch"] == 3
    assert _header_stream(batches[0], stream)["size"] == header["start"]["size"]
    assert _header_stream(batches[-1], stream)["size"] == header["end"]["size"]
    sizes = [_header_stream(line, stream) for line in batches]
    for previous, current in zip(sizes, sizes[1:], strict=False):
        assert current["prev_size"] == previous["size"]
    entries = [line for line in lines if line["type"] == "entry"]
    assert {line["batch"] for line in entries} == {2, 3}
    assert [line["index"] for line in entries] == list(
        range(header["start"]["size"], header["end"]["size"])
    )
    ids = {_body(line)["id"] for line in entries}
    assert str(history["before"].entry.uuid) not in ids
    assert str(history["after"].entry.uuid) not in ids
    assert str(history["last_in_range"].entry.uuid) in ids


def test_the_compact_range_and_the_leaves_reproduce_every_batch_s_stream_root(ai_system, history):
    lines = _export(ai_system)
    header = lines[0]
    stream = header["system"]["stream"]
    start = header["start"]
    border = [bytes.fromhex(node) for node in start["compact_range"]]
    batches = {line["number"]: line for line in lines if line["type"] == "batch"}
    first = _header_stream(batches[start["batch"]], stream)
    assert merkle.root_from_compact_range(start["size"], border, []).hex() == first["root"]
    leaves: list[bytes] = []
    for number in sorted(batches)[1:]:
        leaves += [
            merkle.leaf_hash(base64.b64decode(line["canonical_b64"]))
            for line in lines
            if line["type"] == "entry" and line["batch"] == number
        ]
        stated = _header_stream(batches[number], stream)
        assert merkle.root_from_compact_range(start["size"], border, leaves).hex() == stated["root"]
    merkle.verify_completeness(
        start["size"],
        bytes.fromhex(first["root"]),
        border,
        leaves,
        bytes.fromhex(_header_stream(batches[3], stream)["root"]),
    )


def test_every_entry_is_the_system_s_and_no_other_system_s_leaf_is_in_it(ai_system, history):
    lines = _export(ai_system)
    stream = lines[0]["system"]["stream"]
    bodies = [_body(line) for line in lines if line["type"] == "entry"]
    assert {body["stream"] for body in bodies} == {stream}
    assert {body["body"]["system"] for body in bodies} == {ai_system.slug}
    kinds = [body["kind"] for body in bodies]
    assert {"decision", "outcome", "review", "contest", "erasure"} <= set(kinds)


def _opened(body: dict[str, Any], field: str) -> str:
    inner = body["body"]
    return inner["text_commitment"] if field == "text_commitment" else inner["commitments"][field]


def test_openings_open_the_leaf_commitments(ai_system, history):
    lines = _export(ai_system)
    opened = 0
    for line in lines:
        if line["type"] != "entry":
            continue
        for field, opening in line["openings"].items():
            salt = base64.b64decode(opening["salt_b64"])
            digest = hashlib.sha256(salt + rfc8785.dumps(opening["value"])).hexdigest()
            assert digest == _opened(_body(line), field), field
            opened += 1
    reviewed = _entries_by_decision(lines)[str(history["reviewed"].entry.uuid)]
    assert set(reviewed["openings"]) == {"protected_attributes", "owner", "client_decision_id"}
    assert reviewed["openings"]["protected_attributes"]["value"] == {
        "sex": "female",
        "age_band": "30-39",
    }
    confirm = next(
        line for line in lines if line["type"] == "entry" and _body(line)["kind"] == "review"
    )
    assert confirm["openings"]["text_commitment"]["value"] == RATIONALE
    assert opened >= 7


def test_explanations_and_inputs_are_opened_only_when_asked(ai_system, history):
    lines = _export(ai_system, explanation=True, inputs=True)
    assert lines[0]["openings"] == {"explanation": True, "inputs": True}
    reviewed = _entries_by_decision(lines)[str(history["reviewed"].entry.uuid)]
    assert reviewed["openings"]["inputs"]["value"] == {"income": 42000, "amount": 15000}
    assert "explanation" in reviewed["openings"]


def test_an_erased_decision_is_marked_and_counted_with_no_openings(ai_system, history):
    lines = _export(ai_system, explanation=True)
    decisions = _entries_by_decision(lines)
    contested = decisions[str(history["contested"].entry.uuid)]
    assert contested["erased"] is True
    assert contested["openings"] == {}
    assert all("erased" not in line for key, line in decisions.items() if line is not contested)
    contest = next(
        line for line in lines if line["type"] == "entry" and _body(line)["kind"] == "contest"
    )
    assert contest["openings"] == {}  # its statement was sealed under the destroyed key
    assert lines[-1]["erased"] == 1


def test_a_decision_carries_its_review_item_as_the_operator_states_it(ai_system, history):
    decisions = _entries_by_decision(_export(ai_system))
    reviewed = decisions[str(history["reviewed"].entry.uuid)]["review"]
    assert reviewed["reason"] == "sample"
    assert reviewed["closed_by"] == "review" and reviewed["closed_at"]
    assert reviewed["queued_at"] <= reviewed["closed_at"] <= reviewed["due_at"]


def test_a_system_log_that_starts_in_the_range_starts_at_size_zero(ai_system, history):
    out = io.BytesIO()
    evidence_write(
        system=ai_system, date_from=None, date_to=None, openings=EvidenceOpenings(), out=out
    )
    lines = _parsed(out.getvalue())
    assert lines[0]["start"] == {"batch": 0, "size": 0, "compact_range": []}
    assert lines[0]["end"]["batch"] == 4
    assert [line["number"] for line in lines if line["type"] == "batch"] == [1, 2, 3, 4]
    assert lines[-1]["entries"] == lines[0]["end"]["size"]


# The API: the system's own key, or staff with export_evidence.


def _url(system: AISystem, query: str = "from=2026-01-15&to=2026-02-10") -> str:
    return f"/api/v1/systems/{system.slug}/evidence?{query}"


def _staff(username: str, role: str) -> Client:
    user = User.objects.create_user(username, password="x", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def test_the_system_s_own_key_downloads_the_package_as_a_stream(ai_system, api_client, history):
    response = api_client.get(_url(ai_system))
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/gzip"
    lines = _parsed(b"".join(response.streaming_content))
    assert lines[1:] == _export(ai_system)[1:]  # the header's created_at differs


def test_another_system_s_key_gets_404(ai_system, history):
    other = APIClient()
    other.credentials(
        HTTP_AUTHORIZATION=f"Api-Key {api_key_create(system=AISystemFactory(), name='t')}"
    )
    response = other.get(_url(ai_system))
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_a_compliance_officer_and_an_administrator_may_export(ai_system, history):
    for username, role in [("carol", "compliance officer"), ("ada", "administrator")]:
        response = _staff(username, role).get(_url(ai_system))
        assert response.status_code == 200, role
        assert _parsed(b"".join(response.streaming_content))[-1]["type"] == "end"


def test_a_reviewer_and_an_anonymous_caller_are_refused(ai_system, history):
    assert _staff("rolf", "reviewer").get(_url(ai_system)).status_code == 403
    anonymous = Client().get(_url(ai_system))
    assert anonymous.status_code in (401, 403)
    assert anonymous.json()["error"]["code"] in ("not_authenticated", "permission_denied")


def test_the_export_permission_alone_is_enough_for_staff(ai_system, history):
    user = User.objects.create_user("erin", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="export_evidence"))
    client = Client()
    client.force_login(user)
    assert client.get(_url(ai_system)).status_code == 200


def test_the_widest_dates_there_are_are_an_open_range(ai_system, api_client):
    response = api_client.get(_url(ai_system, "from=0001-01-01&to=9999-12-31"))
    assert response.status_code == 200
    assert _parsed(b"".join(response.streaming_content))[-1]["entries"] == 0


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2026-13-01", "from"),
        ("from=2026-02-01&to=2026-01-01", "from"),
        ("recipient=x", "recipient"),
    ],
)
def test_bad_parameters_are_refused_with_the_field_named(ai_system, api_client, query, field):
    response = api_client.get(_url(ai_system, query))
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_an_encrypted_package_opens_with_the_auditor_s_identity(ai_system, api_client, history):
    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    response = api_client.get(
        _url(ai_system, f"from=2026-01-15&to=2026-02-10&recipient={recipient}")
    )
    assert response.status_code == 200
    encrypted = b"".join(response.streaming_content)
    assert encrypted.startswith(b"age-encryption.org/v1")
    lines = _parsed(pyrage.decrypt(encrypted, [identity]))
    assert lines[1:] == _export(ai_system)[1:]


# The command.


def test_the_command_writes_a_new_file_readable_by_its_owner_only(ai_system, history, tmp_path):
    out = tmp_path / "package.ndjson.gz"
    call_command(
        "evidence_export",
        str(out),
        system=ai_system.slug,
        date_from=date(2026, 1, 15),
        date_to=date(2026, 2, 10),
    )
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert _parsed(out.read_bytes())[1:] == _export(ai_system)[1:]
    with pytest.raises(CommandError, match="exists"):
        call_command("evidence_export", str(out), system=ai_system.slug)


def test_the_command_encrypts_to_a_recipient(ai_system, history, tmp_path):
    identity = pyrage.x25519.Identity.generate()
    out = tmp_path / "package.age"
    call_command(
        "evidence_export",
        str(out),
        system=ai_system.slug,
        recipient=str(identity.to_public()),
        explanations=True,
    )
    lines = _parsed(pyrage.decrypt(out.read_bytes(), [identity]))
    assert lines[0]["openings"]["explanation"] is True and lines[-1]["type"] == "end"


def test_the_command_refuses_plaintext_on_stdout_or_in_a_shared_directory(ai_system, tmp_path):
    with pytest.raises(CommandError, match="stdout"):
        call_command("evidence_export", "-", system=ai_system.slug)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(CommandError, match="anyone may write"):
        call_command("evidence_export", str(shared / "p.gz"), system=ai_system.slug)
    call_command("evidence_export", str(shared / "p.gz"), system=ai_system.slug, plaintext=True)
    assert (shared / "p.gz").exists()


# The admin.


def test_the_system_s_admin_page_offers_the_export_to_those_who_may_export(ai_system):
    page = f"/admin/audit/aisystem/{ai_system.pk}/change/"
    export = f"/api/v1/systems/{ai_system.slug}/evidence"
    assert export in _staff("carol", "compliance officer").get(page).content.decode()
    reviewer = _staff("rolf", "reviewer")
    ReviewSettings.objects.get_or_create(system=ai_system)[0].reviewers.add(
        User.objects.get(username="rolf")
    )
    answer = reviewer.get(page)
    assert answer.status_code == 200
    assert export not in answer.content.decode()


def test_the_export_command_does_not_load_scipy():
    """scipy.stats alone is about 95 MB of RSS: an export of 1M decisions must stay < 200 MB."""
    probe = (
        "import django, sys; django.setup(); "
        "import audit.management.commands.evidence_export, django.contrib.admin; "
        "django.contrib.admin.autodiscover(); print('scipy' in sys.modules)"
    )
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    answer = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=settings.BASE_DIR,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    assert answer.stdout.strip() == "False"
