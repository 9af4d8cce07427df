"""Two Veridict instances on loopback: this one anchors its log to the other's /tsa, keeps sealing
while the other is down, and anchors again once it is back."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from timestamping import keys, selectors, tsa
from timestamping.models import Anchor, AnchorJob, Batch, Entry
from timestamping.services import entry_append
from timestamping.services.anchoring import anchor_job_run, anchor_jobs_due, anchors_sweep
from timestamping.tasks import anchors_due_task, batch_seal_task

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

START_SECONDS = 30


class Peer:
    """A second Veridict instance (gunicorn) with its own SQLite database, log key and TSA."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = {
            "VERIDICT_LOG_SIGNING_KEY_FILE": directory / "keys" / "log-signing.pem",
            "VERIDICT_TSA_KEY_FILE": directory / "keys" / "tsa-key.pem",
            "VERIDICT_TSA_CERT_FILE": directory / "keys" / "tsa-cert.pem",
            "VERIDICT_TSA_CA_CERT_FILE": directory / "keys" / "tsa-ca.pem",
        }
        keys.write_secret(
            self.files["VERIDICT_LOG_SIGNING_KEY_FILE"],
            keys.private_key_pem(Ed25519PrivateKey.generate()),
        )
        tsa.tsa_create(
            key_file=self.files["VERIDICT_TSA_KEY_FILE"],
            cert_file=self.files["VERIDICT_TSA_CERT_FILE"],
            ca_cert_file=self.files["VERIDICT_TSA_CA_CERT_FILE"],
            common_name="Peer Veridict TSA",
        )
        self.ca = self.files["VERIDICT_TSA_CA_CERT_FILE"]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        environment = {
            name: value for name, value in os.environ.items() if name not in ("REDIS_URL",)
        }
        self.environment = {
            **environment,
            **{name: str(path) for name, path in self.files.items()},
            "DATABASE_URL": f"sqlite:///{directory / 'peer.sqlite3'}",
            "VERIDICT_VAR_DIR": str(directory / "var"),
            "VERIDICT_LOG_ORIGIN": "peer.veridict.test/log",
            "PYTHONUNBUFFERED": "1",
        }
        # The TSA's rate limit counts in the cache: the peer's own database.
        self._manage("createcachetable")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{reverse('tsa')}"

    def _manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), *args],
            cwd=settings.BASE_DIR,
            env=self.environment,
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = (self.directory / "gunicorn.log").open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "veridict.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
            ],
            cwd=settings.BASE_DIR,
            env=self.environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_SECONDS
        ca_url = f"http://127.0.0.1:{self.port}{reverse('tsa-ca')}"
        while True:
            try:
                # The first request also loads Django in the worker: give it time.
                if requests.get(ca_url, timeout=10).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    "the peer instance did not start:\n"
                    + (self.directory / "gunicorn.log").read_text()[-3000:]
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def peer(tmp_path: Path, settings) -> Iterator[Peer]:
    """The peer instance, running, configured here as outside backend "peer"."""
    instance = Peer(tmp_path / "peer")
    instance.start()
    settings.ANCHOR_BACKENDS = [
        {
            "name": "peer",
            "type": "rfc3161",
            "url": instance.url,
            "interval": 60,
            "roots": [str(instance.ca)],
        }
    ]
    try:
        yield instance
    finally:
        instance.stop()


def seal_as_the_worker_does(capture) -> int:  # type: ignore[no-untyped-def]
    """batch_seal_task, with the built-in stamp it runs after the commit."""
    with capture(execute=True):
        return batch_seal_task()


def verify_cli(receipt: dict, tmp_path: Path, *cas: Path) -> dict:  # type: ignore[type-arg]
    """`veridict-verify --json` on the receipt with the log key and these TSA CAs pinned."""
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt))
    pins = [arg for ca in cas for arg in ("--tsa-ca", str(ca))]
    result = subprocess.run(
        [sys.executable, "-m", "veridict_verify.cli", str(path), "--key", str(keys.verifier_key())]
        + pins
        + ["--json"],
        capture_output=True,
        text=True,
    )
    assert result.returncode in (0, 1), result.stderr
    return json.loads(result.stdout)


def statuses(report: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {step["name"]: step["status"] for step in report["steps"]}


def test_a_log_anchored_to_a_peers_tsa_verifies_with_both_cas_and_survives_the_peer_going_down(
    peer, tmp_path, django_capture_on_commit_callbacks, ledger_keys
):
    builtin_ca = ledger_keys["TSA_CA_CERT_FILE"]
    first = [entry_append(kind="test", envelope={"n": n})[0] for n in range(3)]
    assert seal_as_the_worker_does(django_capture_on_commit_callbacks) == 3
    assert anchors_due_task() == 1

    receipt = selectors.receipt_get(entry=first[0])
    assert [(a["type"], a["tsa"]) for a in receipt["anchors"]] == [
        ("rfc3161", "builtin"),
        ("rfc3161", peer.url),
    ]
    report = verify_cli(receipt, tmp_path, builtin_ca, peer.ca)
    assert report["verdict"] == "verified", report
    assert statuses(report)["anchor[0]"] == statuses(report)["anchor[1]"] == "ok"
    # The peer's CA is what vouches for its stamp: without it that step fails.
    assert verify_cli(receipt, tmp_path, builtin_ca)["verdict"] == "failed"

    peer.stop()
    (later,) = [entry_append(kind="test", envelope={"n": 99})[0]]
    assert seal_as_the_worker_does(django_capture_on_commit_callbacks) == 4
    assert Batch.objects.count() == 2, "sealing goes on while the peer is down"
    next_interval = timezone.now() + timedelta(seconds=60)
    (job,) = anchor_jobs_due(now=next_interval)
    job = anchor_job_run(job_id=job.pk, now=next_interval)
    assert (job.status, job.attempts, job.batch.number) == ("failed", 1, 2)
    assert "did not answer" in job.last_error and peer.url in job.last_error
    assert Anchor.objects.filter(backend="peer").count() == 1

    peer.start()
    assert anchors_sweep(now=job.next_attempt_at)["anchored"] == 1
    job.refresh_from_db()
    assert (job.status, job.attempts, job.failures) == ("final", 2, 1)
    report = verify_cli(selectors.receipt_get(entry=later), tmp_path, builtin_ca, peer.ca)
    assert report["verdict"] == "verified", report
    assert AnchorJob.objects.filter(backend="peer").count() == 2
    assert Entry.objects.count() == 4
