"""The per-system webhook: a real local HTTP server receives each final review once, signed."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.utils import timezone

from review.models import WebhookDelivery
from review.services import review_approve, review_claim, review_confirm, review_override
from review.tasks import webhook_deliver_task, webhooks_sweep_task
from review.webhooks import (
    SIGNATURE_HEADER,
    _lease,
    webhook_deliver,
    webhook_secret,
    webhook_signature,
    webhook_signature_check,
)

pytestmark = pytest.mark.django_db


class Receiver:
    """An HTTP server on a free local port that records every POST and answers the codes it
    is told to, in order (then 200)."""

    def __init__(self, codes: list[int] | None = None) -> None:
        self.codes = list(codes or [])
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hooked(settings_of, receiver, eager_tasks):
    settings_of.webhook_url = receiver.url
    settings_of.save()
    return settings_of


def test_the_signature_is_hmac_sha256_over_timestamp_and_body(ai_system):
    secret = webhook_secret(system=ai_system)
    assert secret.startswith("whsec_") and secret == webhook_secret(system=ai_system)
    header = webhook_signature(secret=secret, timestamp=1_700_000_000, body=b'{"a":1}')
    import hashlib
    import hmac

    expected = hmac.new(secret.encode(), b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert webhook_signature_check(secret=secret, header=header, body=b'{"a":1}', now=1_700_000_010)
    assert not webhook_signature_check(
        secret=secret, header=header, body=b'{"a":2}', now=1_700_000_010
    )
    assert not webhook_signature_check(
        secret=secret, header=header, body=b'{"a":1}', now=1_800_000_000
    )
    assert not webhook_signature_check(
        secret=secret + "x", header=header, body=b'{"a":1}', now=1_700_000_000
    )


def test_a_final_review_is_posted_once_signed_even_if_the_task_runs_twice(
    queued, alice, hooked, receiver, ai_system, django_capture_on_commit_callbacks
):
    item = review_claim(item=queued(), reviewer=alice)
    with django_capture_on_commit_callbacks(execute=True):
        review_confirm(item=item, reviewer=alice, rationale="fine")
        assert receiver.received == []  # sent only after commit
    assert len(receiver.received) == 1
    delivery = WebhookDelivery.objects.get()
    assert webhook_deliver_task(delivery.pk) == "delivered"  # a second run of the task
    assert len(receiver.received) == 1
    headers, body = receiver.received[0]
    assert webhook_signature_check(
        secret=webhook_secret(system=ai_system), header=headers[SIGNATURE_HEADER], body=body
    )
    payload = json.loads(body)
    assert payload["type"] == "review.final"
    assert payload["decision"]["id"] == str(item.decision.entry.uuid)
    assert payload["review"]["result"] == "confirmed"
    assert payload["review"]["entry"] == str(item.actions.get().entry.uuid)
    assert headers["Veridict-Delivery"] == payload["delivery"] == str(delivery.uuid)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("delivered", 1, 200)


def test_a_failed_delivery_is_retried_with_backoff_until_it_succeeds(
    queued, alice, hooked, receiver, django_capture_on_commit_callbacks
):
    receiver.codes = [500, 503]
    item = review_claim(item=queued(), reviewer=alice)
    with django_capture_on_commit_callbacks(execute=True):
        review_override(item=item, reviewer=alice, rationale="r", output={"label": "approve"})
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "HTTP 500")
    first_wait = (delivery.next_attempt_at - timezone.now()).total_seconds()
    assert 4 <= first_wait <= 10  # base 10 s, less up to half for jitter
    assert webhooks_sweep_task() == 0  # not due yet: nothing sent
    assert len(receiver.received) == 1
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert webhooks_sweep_task() == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 2)
    assert 9 <= (delivery.next_attempt_at - timezone.now()).total_seconds() <= 20  # doubled
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    webhooks_sweep_task()
    webhooks_sweep_task()
    webhook_deliver_task(delivery.pk)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 3)
    assert len(receiver.received) == 3
    assert len({body for _, body in receiver.received}) == 1  # the same body each time


def test_an_unreachable_receiver_is_recorded_and_abandoned_after_the_last_attempt(
    queued, alice, settings_of, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_MAX_ATTEMPTS = 2
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    closed = Receiver()
    closed.close()  # nothing listens on its port any more
    settings_of.webhook_url = closed.url
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    with django_capture_on_commit_callbacks(execute=True):
        review_confirm(item=item, reviewer=alice, rationale="fine")
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "failed" and "Connection" in delivery.last_error
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    webhooks_sweep_task()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("abandoned", 2)


def test_a_leased_delivery_is_not_sent_by_a_second_runner(
    queued, alice, hooked, receiver, django_capture_on_commit_callbacks
):
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")  # callbacks not run: no try yet
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.update(lease_until=timezone.now() + timezone.timedelta(seconds=60))
    assert webhook_deliver_task(delivery.pk) == "pending"
    assert webhooks_sweep_task() == 0
    assert receiver.received == []


def test_four_eyes_fires_on_the_approval_not_the_proposal(
    queued, alice, bob, hooked, receiver, django_capture_on_commit_callbacks
):
    hooked.four_eyes = True
    hooked.save()
    item = review_claim(item=queued(), reviewer=alice)
    with django_capture_on_commit_callbacks(execute=True):
        review_override(item=item, reviewer=alice, rationale="r", output={"label": "approve"})
    assert not WebhookDelivery.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        review_approve(item=item, approver=bob, rationale="agreed")
    (delivery,) = WebhookDelivery.objects.all()
    assert delivery.action.kind == "approve"
    assert json.loads(receiver.received[0][1])["review"]["final_output"] == {"label": "approve"}


def test_no_webhook_url_no_delivery(queued, alice):
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")
    assert not WebhookDelivery.objects.exists()


def test_a_broker_that_is_away_delays_the_webhook_but_not_the_review(
    queued, alice, settings_of, receiver, django_capture_on_commit_callbacks, monkeypatch
):
    from review.tasks import webhook_deliver_task

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(webhook_deliver_task, "delay", broker_down)
    settings_of.webhook_url = receiver.url
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    with django_capture_on_commit_callbacks(execute=True):
        review_confirm(item=item, reviewer=alice, rationale="fine")
    assert WebhookDelivery.objects.get().status == "pending"
    assert webhooks_sweep_task() == 1  # due at once: the sweep sends it
    assert WebhookDelivery.objects.get().status == "delivered"
    assert len(receiver.received) == 1


def test_a_delivery_not_yet_due_is_not_leased_and_attempts_count_from_the_row(
    queued, alice, hooked, receiver
):
    """The lease itself checks next_attempt_at, and the attempt count is the row's, not the
    caller's earlier read of it."""
    item = review_claim(item=queued(), reviewer=alice)
    review_confirm(item=item, reviewer=alice, rationale="fine")  # callbacks not run: no try yet
    delivery = WebhookDelivery.objects.get()
    later = timezone.now() + timezone.timedelta(seconds=60)
    WebhookDelivery.objects.update(status="failed", attempts=1, next_attempt_at=later)
    assert _lease(delivery.pk) is False
    WebhookDelivery.objects.update(next_attempt_at=timezone.now())
    assert webhook_deliver(delivery_id=delivery.pk) == "delivered"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 2)
    assert len(receiver.received) == 1
