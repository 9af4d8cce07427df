"""Retention: what is past an AI system's retention period is erased by a daily task."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.utils import timezone
from structlog.testing import capture_logs

from audit import vault
from audit.models import AISystem, Decision, Document, Erasure, Subject
from audit.services.retention import retention_sweep
from audit.services.subjects import decision_personal_data, subject_by_reference, subject_erase
from audit.tasks import retention_sweep_task
from timestamping.models import Entry
from timestamping.services import entry_append

pytestmark = pytest.mark.django_db


def record(api_client, body, *, days_ago: float) -> Decision:
    response = api_client.post("/api/v1/decisions", body, format="json")
    assert response.status_code == 201, response.content
    decision = Decision.objects.get(entry__uuid=response.json()["id"])
    # Domain rows are editable: this is how a decision received long ago looks.
    Decision.objects.filter(pk=decision.pk).update(
        received_at=timezone.now() - timedelta(days=days_ago)
    )
    return decision


def stored_document(system: AISystem, content: bytes, *, days_ago: float) -> Document:
    sha256 = content.hex().ljust(64, "0")[:64]
    entry, _ = entry_append(
        kind="document", envelope={"type": "document", "system": system.slug, "sha256": sha256}
    )
    document = Document.objects.create(
        system=system, entry=entry, sha256=sha256, file=ContentFile(content, name="scan.pdf")
    )
    Document.objects.filter(pk=document.pk).update(
        registered_at=timezone.now() - timedelta(days=days_ago)
    )
    return document


def subject(system: AISystem, reference: str) -> Subject:
    found = subject_by_reference(system=system, reference=reference)
    assert found is not None
    return found


def test_a_subject_is_erased_once_all_its_decisions_are_past_retention(
    api_client, decision_request, ai_system
):
    old = record(api_client, decision_request(client_decision_id="a-1"), days_ago=200)
    also_old = record(api_client, decision_request(client_decision_id="a-2"), days_ago=190)
    record(api_client, decision_request(client_decision_id="b-1", subject_ref="b"), days_ago=200)
    recent = record(
        api_client, decision_request(client_decision_id="b-2", subject_ref="b"), days_ago=10
    )

    with capture_logs() as logs:
        sweep = retention_sweep()

    assert sweep.subjects_erased == 1
    assert decision_personal_data(Decision.objects.get(pk=old.pk)) is None
    assert decision_personal_data(Decision.objects.get(pk=also_old.pk)) is None
    assert decision_personal_data(Decision.objects.get(pk=recent.pk)) is not None
    assert subject(ai_system, "b").wrapped_key is not None
    erasure = Erasure.objects.get()
    leaf = json.loads(bytes(erasure.entry.canonical))["body"]
    assert leaf["reason"] == "retention"
    assert erasure.decision_ids == sorted([str(old.entry.uuid), str(also_old.entry.uuid)])
    salt = bytes(erasure.decisions_salt)
    assert leaf["decisions_commitment"] == vault.commitment(salt=salt, value=erasure.decision_ids)
    erased_logs = [line for line in logs if line["event"] == "subject_erased"]
    assert [(line["reason"], line["entry"]) for line in erased_logs] == [
        ("retention", str(erasure.entry.uuid))
    ]


def test_each_system_counts_its_own_retention_period(api_client, decision_request, ai_system):
    AISystem.objects.filter(pk=ai_system.pk).update(retention_days=365)
    kept = record(api_client, decision_request(client_decision_id="a-1"), days_ago=300)
    gone = record(
        api_client, decision_request(client_decision_id="b-1", subject_ref="b"), days_ago=400
    )

    retention_sweep()

    assert decision_personal_data(Decision.objects.get(pk=kept.pk)) is not None
    assert decision_personal_data(Decision.objects.get(pk=gone.pk)) is None


def test_the_clock_moving_past_retention_erases_what_was_recent(
    api_client, decision_request, ai_system
):
    decision = record(api_client, decision_request(), days_ago=0)
    assert retention_sweep().subjects_erased == 0
    later = timezone.now() + timedelta(days=ai_system.retention_days, seconds=1)
    with mock.patch("django.utils.timezone.now", return_value=later):
        assert retention_sweep().subjects_erased == 1
    assert decision_personal_data(Decision.objects.get(pk=decision.pk)) is None


def test_nothing_is_erased_before_six_months_even_if_a_system_says_less(
    api_client, decision_request, ai_system
):
    AISystem.objects.filter(pk=ai_system.pk).update(retention_days=30)  # past the validator
    decision = record(api_client, decision_request(), days_ago=90)
    assert retention_sweep().subjects_erased == 0
    assert decision_personal_data(Decision.objects.get(pk=decision.pk)) is not None


def test_sweeping_twice_erases_once(api_client, decision_request, ai_system, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    record(api_client, decision_request(), days_ago=200)
    stored_document(ai_system, b"old scan", days_ago=200)

    first = retention_sweep()
    entries = Entry.objects.count()
    second = retention_sweep()

    assert (first.subjects_erased, first.files_erased) == (1, 1)
    assert (second.subjects_erased, second.files_erased) == (0, 0)
    assert Entry.objects.count() == entries
    assert Erasure.objects.count() == 2


def test_stored_files_past_retention_are_deleted_and_their_documents_and_entries_stay(
    ai_system, settings, tmp_path: Path
):
    settings.MEDIA_ROOT = tmp_path
    old = stored_document(ai_system, b"old scan", days_ago=200)
    recent = stored_document(ai_system, b"new scan", days_ago=5)
    old_path, recent_path = Path(old.file.path), Path(recent.file.path)

    with capture_logs() as logs:
        sweep = retention_sweep()

    assert sweep.files_erased == 1
    assert not old_path.exists()
    assert recent_path.read_bytes() == b"new scan"
    old.refresh_from_db()
    assert not old.file
    assert old.sha256 == b"old scan".hex().ljust(64, "0")[:64]
    assert Entry.objects.filter(pk=old.entry_id).exists()
    erasure = Erasure.objects.get(document=old)
    leaf = json.loads(bytes(erasure.entry.canonical))["body"]
    assert (erasure.entry.kind, leaf["reason"], leaf["document"]) == (
        "file_erasure",
        "retention",
        str(old.entry.uuid),
    )
    assert any(line["event"] == "document_file_erased" for line in logs)


def test_a_file_that_cannot_be_deleted_is_kept_on_record_and_retried(
    ai_system, settings, tmp_path: Path
):
    settings.MEDIA_ROOT = tmp_path
    document = stored_document(ai_system, b"old scan", days_ago=200)
    with mock.patch.object(FileSystemStorage, "delete", side_effect=PermissionError("read-only")):
        failed = retention_sweep()
    assert (failed.files_erased, failed.files_failed) == (0, 1)
    document.refresh_from_db()
    assert document.file and not Erasure.objects.exists()

    assert retention_sweep().files_erased == 1
    assert not Path(document.file.path).exists()


def test_a_decision_recorded_after_the_subject_was_chosen_saves_it(
    api_client, decision_request, ai_system
):
    record(api_client, decision_request(), days_ago=200)
    chosen = subject(ai_system, "applicant-88231")
    record(api_client, decision_request(client_decision_id="loan-2"), days_ago=0)
    cutoff = timezone.now() - timedelta(days=ai_system.retention_days)
    assert subject_erase(subject=chosen, reason="retention", before=cutoff) is None
    assert subject(ai_system, "applicant-88231").wrapped_key is not None


def test_the_task_runs_the_sweep_and_beat_runs_it_daily_with_an_expiry(
    api_client, decision_request
):
    record(api_client, decision_request(), days_ago=200)
    assert retention_sweep_task.apply().get()["subjects_erased"] == 1
    assert retention_sweep_task.apply().get()["subjects_erased"] == 0
    entry = next(
        entry
        for entry in django_settings.CELERY_BEAT_SCHEDULE.values()
        if entry["task"] == "audit.retention_sweep"
    )
    assert entry["schedule"] == 24 * 60 * 60
    assert 0 < entry["options"]["expires"] < entry["schedule"]


def test_a_backlog_larger_than_a_run_is_finished_by_the_next_runs(api_client, decision_request):
    for number in range(3):
        record(
            api_client,
            decision_request(client_decision_id=f"d-{number}", subject_ref=f"s-{number}"),
            days_ago=200,
        )
    first = retention_sweep(limit=2)
    assert (first.subjects_erased, first.more) == (2, True)
    assert retention_sweep(limit=2).subjects_erased == 1
    assert not Subject.objects.filter(wrapped_key__isnull=False).exists()
