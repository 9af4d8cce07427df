"""Outside anchors: a remote RFC 3161 TSA on its own interval, retries, receipts, the batch API.

The remote TSA is OpenSSL's (`openssl ts -reply`) behind a small HTTP server on loopback: an
implementation that is not Veridict's, spoken to in the real protocol.
"""

from __future__ import annotations

import hashlib
import subprocess
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from asn1crypto import tsp
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from veridict_verify.receipt import receipt_verify

from timestamping import anchor_backends, keys, selectors, tsa
from timestamping.ledger_check import ledger_verify
from timestamping.models import Anchor, AnchorJob, AnchorReorg, Batch, Entry
from timestamping.services import entry_append
from timestamping.services.anchoring import (
    anchor_job_run,
    anchor_jobs_due,
    anchors_sweep,
    batch_anchor_missing,
    checkpoint_body,
)
from timestamping.tasks import anchors_due_task, batch_seal_task

pytestmark = pytest.mark.django_db

OPENSSL = "/usr/bin/openssl"
INTERVAL = 60
# A moment at the start of an interval-long slot, so "the same interval" is unambiguous.
T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)


class RemoteTSA:
    """OpenSSL's TSA behind HTTP on 127.0.0.1. `mode` makes it misbehave as a remote TSA can."""

    def __init__(self, directory: Path, chain: SimpleNamespace | None = None) -> None:
        """With `chain` (tsa_chain_make), it signs as that PKI's TSA and embeds the chain
        (intermediate and root) in every answer, as many commercial TSAs do."""
        directory.mkdir(parents=True)
        self.directory = directory
        if chain is None:
            self.ca = directory / "ca.pem"
            cert, key, embedded = directory / "cert.pem", directory / "key.pem", ""
            tsa.tsa_create(
                key_file=key,
                cert_file=cert,
                ca_cert_file=self.ca,
                common_name="Remote stand-in TSA",
            )
        else:
            self.ca, cert, key = chain.root, chain.cert, chain.key
            embedded = f"certs = {chain.chain}\n"
        (directory / "serial").write_text("01\n")
        (directory / "tsa.cnf").write_text(
            "[ tsa ]\ndefault_tsa = remote\n[ remote ]\n"
            f"serial = {directory}/serial\nsigner_cert = {cert}\n{embedded}"
            f"signer_key = {key}\nsigner_digest = sha256\n"
            "default_policy = 1.3.6.1.4.1.99999.1\ndigests = sha256\naccuracy = secs:1\n"
            "ordering = no\ntsa_name = yes\ness_cert_id_chain = no\ness_cert_id_alg = sha256\n"
        )
        self.mode = "ok"
        self.queries = 0
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tsr"

    def reply(self, query: bytes) -> bytes:
        if self.mode == "replayed":
            # Signed by the right TSA, but for another request: a replayed answer.
            request = tsp.TimeStampReq.load(query)
            request["nonce"] = request["nonce"].native + 1
            query = request.dump(force=True)
        elif self.mode == "other_digest":
            request = tsp.TimeStampReq.load(query)
            request["message_imprint"]["hashed_message"] = hashlib.sha256(b"other").digest()
            query = request.dump(force=True)
        elif self.mode == "untrusted":
            return tsa.tsa_respond(query)  # Veridict's built-in TSA: not a configured root
        elif self.mode == "rejection":
            return tsa.tsa_respond(b"not a query")
        query_file = self.directory / "query.tsq"
        query_file.write_bytes(query)
        return subprocess.run(
            [
                OPENSSL,
                "ts",
                "-reply",
                "-config",
                str(self.directory / "tsa.cnf"),
                "-queryfile",
                str(query_file),
            ],
            capture_output=True,
            check=True,
        ).stdout

    def start(self) -> None:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 -- the name http.server calls
                query = self.rfile.read(int(self.headers["Content-Length"]))
                stand_in.queries += 1
                if stand_in.mode == "http_500":
                    status, media_type, body = 500, "text/plain", b"down for maintenance"
                elif stand_in.mode == "html":
                    status, media_type, body = 200, "text/html", b"<html>a login page</html>"
                else:
                    status, media_type = 200, "application/timestamp-reply"
                    body = stand_in.reply(query)
                self.send_response(status)
                self.send_header("Content-Type", media_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()
        self.server = None


def remote_configure(settings, stand_in: RemoteTSA, roots: list[Path]) -> None:
    settings.ANCHOR_BACKENDS = [
        {
            "name": "remote",
            "type": "rfc3161",
            "url": stand_in.url,
            "interval": INTERVAL,
            "roots": [str(root) for root in roots],
            "timeout": 5,
        }
    ]
    settings.ANCHOR_RETRY_BASE_SECONDS = 10
    settings.ANCHOR_RETRY_MAX_SECONDS = 600


@pytest.fixture
def remote(tmp_path: Path, settings) -> Iterator[RemoteTSA]:
    """A running remote TSA, configured as backend "remote" every INTERVAL seconds."""
    stand_in = RemoteTSA(tmp_path / "remote-tsa")
    stand_in.start()
    remote_configure(settings, stand_in, [stand_in.ca])
    yield stand_in
    if stand_in.server is not None:
        stand_in.stop()


@pytest.fixture
def chained_remote(tmp_path: Path, settings, tsa_chain) -> Iterator[RemoteTSA]:
    """A running remote TSA that embeds its chain of three, its root configured."""
    stand_in = RemoteTSA(tmp_path / "chained-tsa", chain=tsa_chain)
    stand_in.start()
    remote_configure(settings, stand_in, [tsa_chain.root])
    yield stand_in
    stand_in.stop()


def append(count: int) -> list[Entry]:
    return [entry_append(kind="test", envelope={"n": n})[0] for n in range(count)]


def both_cas(tsa_ca_pem: bytes, remote: RemoteTSA) -> bytes:
    return tsa_ca_pem + remote.ca.read_bytes()


def anchor_now(now: datetime) -> AnchorJob:
    """anchors_due at `now`: exactly one job, tried once."""
    (job,) = anchor_jobs_due(now=now)
    result = anchor_job_run(job_id=job.pk, now=now)
    assert result is not None
    return result


def test_a_due_backend_anchors_the_latest_checkpoint_and_earlier_receipts_prove_consistency(
    remote, seal, tsa_ca_pem
):
    (early,) = append(1)
    seal()
    append(3)
    seal()
    job = anchor_now(T0)
    assert (job.status, job.attempts, job.batch.number) == ("final", 1, 2)

    receipt = selectors.receipt_get(entry=early)
    builtin, outside = receipt["anchors"]
    assert (builtin["tsa"], outside["tsa"]) == ("builtin", remote.url)
    assert outside["checkpoint"] == Batch.objects.get(number=2).checkpoint
    assert outside["consistency"], "batch 1's tree must be proven a prefix of batch 2's"
    report = receipt_verify(
        receipt, keys=[keys.verifier_key()], tsa_ca_pem=both_cas(tsa_ca_pem, remote)
    )
    assert report.ok, report.steps
    assert [s.name for s in report.steps][-2:] == ["anchor[0]", "anchor[1]"]


def test_the_remote_time_stamp_verifies_only_with_the_remote_tsas_ca_pinned(
    remote, seal, tsa_ca_pem
):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    report = receipt_verify(
        selectors.receipt_get(entry=entry), keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem
    )
    assert report.failed is not None and report.failed.name == "anchor[1]"
    assert "pinned TSA CA" in report.failed.detail


def test_a_remote_tsa_that_embeds_its_chain_of_three_anchors_and_openssl_verifies_the_token(
    chained_remote, seal, tsa_ca_pem, tsa_chain, tmp_path
):
    (entry,) = append(1)
    seal()
    job = anchor_now(T0)
    assert (job.status, job.last_error) == ("final", "")
    anchor = Anchor.objects.get(backend="remote")
    token = tsp.TimeStampResp.load(bytes(anchor.tsr))["time_stamp_token"]
    assert len(token["content"]["certificates"]) == 3  # stored as the TSA sent it

    report = receipt_verify(
        selectors.receipt_get(entry=entry),
        keys=[keys.verifier_key()],
        tsa_ca_pem=tsa_ca_pem + tsa_chain.root.read_bytes(),
    )
    assert report.ok, report.steps
    (tmp_path / "checkpoint.txt").write_bytes(checkpoint_body(anchor.batch))
    (tmp_path / "anchor.tsr").write_bytes(bytes(anchor.tsr))
    result = subprocess.run(
        [
            OPENSSL, "ts", "-verify", "-data", "checkpoint.txt", "-in", "anchor.tsr",
            "-CAfile", str(tsa_chain.root),
        ],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stderr


def test_a_remote_tsa_whose_chain_does_not_lead_to_the_configured_root_is_refused(
    chained_remote, seal, settings, ledger_keys
):
    remote_configure(settings, chained_remote, [ledger_keys["TSA_CA_CERT_FILE"]])
    append(1)
    seal()
    job = anchor_now(T0)
    assert job.status == "failed"
    assert "not signed by the pinned TSA CA" in job.last_error
    assert not Anchor.objects.filter(backend="remote").exists()


def test_a_backend_anchors_once_per_interval_however_many_batches_are_sealed(remote, seal):
    append(1)
    seal()
    anchor_now(T0)
    for second in (5, 20, 59):
        append(10)
        seal()
        assert anchor_jobs_due(now=T0 + timedelta(seconds=second)) == []
    job = anchor_now(T0 + timedelta(seconds=INTERVAL))
    assert job.batch.number == Batch.objects.count() == 4
    assert Anchor.objects.filter(backend="remote").count() == 2
    assert remote.queries == 2


def test_a_backend_with_nothing_new_sealed_does_not_anchor_the_same_checkpoint_again(remote, seal):
    append(1)
    seal()
    anchor_now(T0)
    assert anchor_jobs_due(now=T0 + timedelta(hours=1)) == []
    assert remote.queries == 1


def test_nothing_is_anchored_before_the_first_seal(remote):
    append(2)
    assert anchor_jobs_due(now=T0) == []


def test_an_unanswered_anchor_fails_with_its_reason_and_is_retried_with_growing_backoff(
    remote, seal
):
    append(1)
    seal()
    remote.stop()
    job = anchor_now(T0)
    assert (job.status, job.attempts, job.failures) == ("failed", 1, 1)
    assert remote.url in job.last_error and "did not answer" in job.last_error
    first_wait = (job.next_attempt_at - T0).total_seconds()
    assert 5 <= first_wait <= 10  # base 10 s, less up to half of it for jitter

    assert anchors_sweep(now=T0 + timedelta(seconds=4))["retried"] == 0
    later = job.next_attempt_at
    anchors_sweep(now=later)
    job.refresh_from_db()
    assert (job.status, job.attempts, job.failures) == ("failed", 2, 2)
    assert 10 <= (job.next_attempt_at - later).total_seconds() <= 20

    remote.start()
    outcome = anchors_sweep(now=job.next_attempt_at)
    job.refresh_from_db()
    assert outcome["anchored"] == 1
    assert (job.status, job.attempts, job.failures, job.last_error) == ("final", 3, 2, "")
    assert Anchor.objects.filter(backend="remote", batch=job.batch).exists()


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("replayed", "without this request's nonce"),
        ("other_digest", "covers a different message"),
        ("untrusted", "not signed by the pinned TSA CA"),
        ("rejection", "did not grant"),
        ("http_500", "answered HTTP 500"),
        ("html", "answered text/html, not application/timestamp-reply"),
    ],
)
def test_a_remote_answer_that_does_not_check_is_refused_and_not_stored(remote, seal, mode, reason):
    append(1)
    seal()
    remote.mode = mode
    job = anchor_now(T0)
    assert job.status == "failed"
    assert reason in job.last_error
    assert not Anchor.objects.filter(backend="remote").exists()


def test_while_a_job_is_retried_no_second_job_piles_up_for_the_same_backend(remote, seal):
    append(1)
    seal()
    remote.stop()
    anchor_now(T0)
    for hour in range(1, 4):
        append(1)
        seal()
        assert anchor_jobs_due(now=T0 + timedelta(hours=hour)) == []
    assert AnchorJob.objects.filter(backend="remote").count() == 1


def test_a_job_run_twice_at_once_anchors_once(remote, seal):
    append(1)
    seal()
    (job,) = anchor_jobs_due(now=T0)
    assert anchor_job_run(job_id=job.pk, now=T0) is not None
    assert anchor_job_run(job_id=job.pk, now=T0) is None
    assert remote.queries == 1
    assert Anchor.objects.filter(backend="remote").count() == 1


def test_a_try_cut_short_by_a_crash_is_taken_over_once_its_lease_ends(remote, seal):
    append(1)
    seal()
    (job,) = anchor_jobs_due(now=T0)
    lease = anchor_backends.backends_configured()["remote"].lease_seconds
    # What a worker killed in the middle of its try leaves behind: the claim, no outcome.
    AnchorJob.objects.filter(pk=job.pk).update(
        attempts=1, next_attempt_at=T0 + timedelta(seconds=lease)
    )
    assert anchors_sweep(now=T0 + timedelta(seconds=lease - 1))["retried"] == 0
    anchors_sweep(now=T0 + timedelta(seconds=lease))
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("final", 2)


def test_sealing_goes_on_while_an_anchor_backend_is_down(
    remote, django_capture_on_commit_callbacks
):
    remote.stop()
    for round_ in range(3):
        append(2)
        with django_capture_on_commit_callbacks(execute=True):
            assert batch_seal_task() == 2 * (round_ + 1)
        anchors_due_task()
    assert Batch.objects.count() == 3
    assert Anchor.objects.filter(backend="builtin").count() == 3
    (job,) = AnchorJob.objects.filter(backend="remote")
    assert job.status == "failed"


def test_the_batch_api_lists_each_backends_job_with_status_attempts_and_reason(
    remote, seal, client
):
    append(1)
    seal()
    remote.stop()
    anchor_now(T0)
    body = client.get("/api/v1/log/batches/1").json()
    (job,) = body["anchor_jobs"]
    assert (job["backend"], job["status"], job["attempts"], job["failures"]) == (
        "remote",
        "failed",
        1,
        1,
    )
    assert "did not answer" in job["last_error"] and job["next_attempt_at"]
    assert [(a["backend"], a["evidence"]["tsa"]) for a in body["anchors"]] == [
        ("builtin", "builtin")
    ]


def test_receipts_say_which_anchors_are_pending_or_failed_and_still_verify(
    remote, seal, tsa_ca_pem
):
    (entry,) = append(1)
    seal()
    status = {s["backend"]: s for s in selectors.receipt_get(entry=entry)["anchor_status"]}
    assert status["builtin"]["status"] == "final"
    assert status["remote"]["status"] == "scheduled"

    remote.stop()
    anchor_now(T0)
    receipt = selectors.receipt_get(entry=entry)
    remote_state = next(s for s in receipt["anchor_status"] if s["backend"] == "remote")
    assert remote_state["status"] == "failed" and remote_state["attempts"] == 1
    assert "did not answer" in remote_state["last_error"]
    assert len(receipt["anchors"]) == 1
    report = receipt_verify(receipt, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem)
    assert report.ok, report.steps


def test_a_failed_builtin_stamp_is_recorded_and_the_sweep_stamps_it_later(
    seal, settings, ledger_keys, tmp_path
):
    append(1)
    settings.TSA_KEY_FILE = tmp_path / "missing-key.pem"
    seal()  # the stamp after the commit fails; the seal stands
    batch = Batch.objects.get()
    job = AnchorJob.objects.get(backend="builtin", batch=batch)
    assert (job.status, job.attempts) == ("failed", 1)
    assert "create_tsa" in job.last_error

    settings.TSA_KEY_FILE = ledger_keys["TSA_KEY_FILE"]
    assert batch_anchor_missing(now=job.created_at) == 0  # waits for its retry time
    assert batch_anchor_missing(now=job.next_attempt_at) == 1
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("final", 2)
    assert Anchor.objects.filter(backend="builtin", batch=batch).exists()


def test_a_retired_backend_anchors_nothing_new_but_its_anchors_stay_in_receipts(
    remote, seal, settings, tsa_ca_pem
):
    (entry,) = append(1)
    seal()
    anchor_now(T0)
    settings.ANCHOR_BACKENDS = [{**settings.ANCHOR_BACKENDS[0], "retired": True}]
    append(1)
    seal()
    assert anchor_jobs_due(now=T0 + timedelta(hours=1)) == []
    receipt = selectors.receipt_get(entry=entry)
    assert [a["tsa"] for a in receipt["anchors"]] == ["builtin", remote.url]


def test_verify_ledger_checks_remote_time_stamps_against_the_backends_roots(
    remote, seal, tsa_ca_pem
):
    append(1)
    seal()
    anchor_now(T0)
    report = ledger_verify(keys=None, tsa_ca_pem=tsa_ca_pem)
    assert report.ok and (report.anchors, report.anchors_unchecked) == (2, 0)

    anchor = Anchor.objects.get(backend="remote")
    forged = tsa.tsa_stamp(hashlib.sha256(b"another checkpoint").digest())
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('session_replication_role', 'replica', false)")
        Anchor.objects.filter(pk=anchor.pk).update(tsr=forged)
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config('session_replication_role', 'origin', false)")
    report = ledger_verify(keys=None, tsa_ca_pem=tsa_ca_pem)
    assert report.mismatch is not None
    assert (report.mismatch.what, report.mismatch.batch, report.mismatch.anchor) == (
        "anchor",
        1,
        anchor.pk,
    )
    assert "'remote'" in report.mismatch.detail


@pytest.mark.postgres
def test_anchor_rows_stay_append_only_while_their_jobs_change(remote, seal):
    append(1)
    seal()
    job = anchor_now(T0)
    with pytest.raises(IntegrityError), transaction.atomic():
        Anchor.objects.filter(backend="remote").update(tsa="forged")
    AnchorJob.objects.filter(pk=job.pk).update(last_error="edited")
    job.refresh_from_db()
    assert job.last_error == "edited"


@pytest.mark.postgres
def test_a_reorganisation_mark_is_append_only_and_a_batch_has_one_first_anchor(remote, seal):
    append(1)
    seal()
    anchor_now(T0)
    anchor = Anchor.objects.get(backend="remote")
    mark = AnchorReorg.objects.create(anchor=anchor, detected_at=T0, reason="test")
    with pytest.raises(IntegrityError), transaction.atomic():
        AnchorReorg.objects.filter(pk=mark.pk).update(reason="forged")
    with pytest.raises(IntegrityError), transaction.atomic():
        AnchorReorg.objects.filter(pk=mark.pk).delete()
    with pytest.raises(IntegrityError), transaction.atomic():  # a second first anchor
        Anchor.objects.create(batch=anchor.batch, backend="remote", anchored_at=T0)
    Anchor.objects.create(batch=anchor.batch, backend="remote", anchored_at=T0, replaces=anchor)
    with pytest.raises(IntegrityError), transaction.atomic():  # replaced only once
        Anchor.objects.create(batch=anchor.batch, backend="remote", anchored_at=T0, replaces=anchor)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ({"type": "rfc3161", "interval": 60}, "name"),
        ({"name": "builtin", "type": "rfc3161", "interval": 60}, "name"),
        ({"name": "x", "type": "carrier-pigeon", "interval": 60}, "type"),
        ({"name": "x", "type": "rfc3161", "interval": 0}, "interval"),
        ({"name": "x", "type": "rfc3161", "interval": "60"}, "interval"),
        ({"name": "x", "type": "rfc3161", "interval": 60, "url": "ftp://tsa"}, "url"),
        ({"name": "x", "type": "rfc3161", "interval": 60, "url": "http://tsa"}, "roots"),
        (
            {"name": "x", "type": "rfc3161", "interval": 60, "url": "http://t", "roots": ["/nope"]},
            "cannot read root /nope",
        ),
        ({"name": "x", "type": "rfc3161", "interval": 60, "colour": "red"}, "colour"),
    ],
)
def test_a_wrong_backend_configuration_names_the_entry_and_the_field(entry, complaint):
    with pytest.raises(ImproperlyConfigured) as refused:
        anchor_backends.backends_parse([entry])
    assert complaint in str(refused.value)


def test_two_backends_may_not_share_a_name(ledger_keys):
    entry = {
        "name": "x",
        "type": "rfc3161",
        "interval": 60,
        "url": "http://tsa.example/",
        "roots": [str(ledger_keys["TSA_CA_CERT_FILE"])],
    }
    with pytest.raises(ImproperlyConfigured, match="used twice"):
        anchor_backends.backends_parse([entry, entry])
