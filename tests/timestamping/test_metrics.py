"""GET metrics: what an operator alerts on, in Prometheus text format, read at scrape time."""

from __future__ import annotations

import re
import socket
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from structlog.testing import capture_logs

from timestamping.metrics import metrics_collect, metrics_render
from timestamping.models import Entry
from timestamping.services import entry_append
from timestamping.services.anchoring import anchor_job_run, anchor_jobs_due
from timestamping.tasks import batch_seal_task

pytestmark = pytest.mark.django_db

SAMPLE = re.compile(r'^([a-z_]+)(?:\{((?:[a-z_]+="[^"]*",?)*)\})? (-?[0-9.e+]+|NaN)$')


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, labels); fails on a line that is not Prometheus text format 0.0.4
    or a sample whose metric has no HELP and TYPE."""
    samples, described = {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            described.add(line.split()[2])
            continue
        match = SAMPLE.match(line)
        assert match, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        assert name in described, f"{name} has no HELP/TYPE"
        pairs = tuple(re.findall(r'([a-z_]+)="([^"]*)"', labels or ""))
        samples[(name, pairs)] = float(value)
    return samples


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    response = client.get(reverse("metrics"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(response.content.decode())


def append(count: int) -> None:
    for n in range(count):
        entry_append(kind="test", envelope={"n": n})


def test_an_empty_log_reports_zeros(client):
    metrics = scrape(client)
    assert metrics[("veridict_entries_pending", ())] == 0
    assert metrics[("veridict_entries_over_mmd", ())] == 0
    assert metrics[("veridict_batches_sealed_total", ())] == 0


def test_pending_entries_and_the_age_of_the_oldest_are_reported(client):
    append(3)
    oldest = Entry.objects.order_by("seq").first().received_at
    later = oldest + timedelta(seconds=42)
    metrics = parse(metrics_render(metrics_collect(now=later)))
    assert metrics[("veridict_entries_pending", ())] == 3
    assert 41.9 < metrics[("veridict_entries_pending_oldest_age_seconds", ())] <= 42.0


def test_entries_waiting_longer_than_the_mmd_raise_the_alert_gauge(settings):
    settings.MMD_SECONDS = 60
    append(2)
    received = Entry.objects.order_by("seq").first().received_at
    within = parse(metrics_render(metrics_collect(now=received + timedelta(seconds=59))))
    beyond = parse(metrics_render(metrics_collect(now=received + timedelta(seconds=61))))
    assert within[("veridict_entries_over_mmd", ())] == 0
    assert beyond[("veridict_entries_over_mmd", ())] == 2
    assert beyond[("veridict_mmd_seconds", ())] == 60


def test_the_seal_task_warns_when_an_entry_waits_longer_than_the_mmd(settings, monkeypatch):
    monkeypatch.setattr("timestamping.tasks.SEAL_BUDGET_SECONDS", -1)  # one batch per task
    settings.SEAL_MAX_ENTRIES = 1
    append(3)
    settings.MMD_SECONDS = 3600
    with capture_logs() as quiet:
        batch_seal_task()
    assert not [log for log in quiet if log["event"] == "mmd_exceeded"]
    settings.MMD_SECONDS = 0
    with capture_logs() as logs:
        batch_seal_task()
    (warning,) = [log for log in logs if log["event"] == "mmd_exceeded"]
    assert warning["log_level"] == "warning" and warning["oldest_pending_age_seconds"] > 0
    (sealed,) = [log for log in logs if log["event"] == "batch_sealed"]
    assert (sealed["batch"], sealed["entries"]) == (2, 1) and sealed["seconds"] >= 0


def test_a_seal_is_reported_with_its_duration_size_and_the_batches_sealed(client, settings):
    append(2)
    batch_seal_task()
    metrics = scrape(client)
    assert metrics[("veridict_batches_sealed_total", ())] == 1
    assert metrics[("veridict_tree_size", ())] == 2
    assert metrics[("veridict_entries_pending", ())] == 0
    assert metrics[("veridict_last_seal_entries", ())] == 2
    assert metrics[("veridict_last_seal_duration_seconds", ())] > 0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_anchor_lag_failures_and_open_jobs_are_reported_per_backend(settings, seal, ledger_keys):
    settings.ANCHOR_BACKENDS = [
        {
            "name": "down",
            "type": "rfc3161",
            "url": f"http://127.0.0.1:{closed_port()}/",
            "interval": 60,
            "roots": [str(ledger_keys["TSA_CA_CERT_FILE"])],
        }
    ]
    append(1)
    seal()
    now = timezone.now()
    (job,) = anchor_jobs_due(now=now)
    anchor_job_run(job_id=job.pk, now=now)
    append(1)
    latest = seal()
    metrics = parse(metrics_render(metrics_collect(now=latest.sealed_at + timedelta(seconds=30))))
    assert metrics[("veridict_anchor_lag_seconds", (("backend", "builtin"),))] == 30
    assert metrics[("veridict_anchor_batches_behind", (("backend", "builtin"),))] == 0
    assert ("veridict_anchor_lag_seconds", (("backend", "down"),)) not in metrics
    assert metrics[("veridict_anchor_failures_total", (("backend", "down"),))] == 1
    assert metrics[("veridict_anchor_failures_total", (("backend", "builtin"),))] == 0
    failed = ("veridict_anchor_jobs", (("backend", "down"), ("status", "failed")))
    assert metrics[failed] == 1


def test_the_anchor_lag_grows_with_the_time_since_the_newest_anchored_batch(seal):
    append(1)
    batch = seal()
    metrics = parse(metrics_render(metrics_collect(now=batch.sealed_at + timedelta(seconds=90))))
    assert metrics[("veridict_anchor_lag_seconds", (("backend", "builtin"),))] == 90


def test_with_a_token_set_metrics_want_it_as_a_bearer_token(client, settings):
    settings.METRICS_TOKEN = "s3cret-scrape-token"
    refused = client.get(reverse("metrics"))
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    wrong = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer guess")
    assert wrong.status_code == 403
    right = client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer s3cret-scrape-token")
    assert right.status_code == 200
