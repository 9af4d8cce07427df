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

    def __init__(self, codes: list[int] | None = None, location: str = "") -> None:
        self.codes = list(codes or [])
        self.location = location
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the http.server name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                code = receiver.codes.pop(0) if receiver.codes else 200
                self.send_response(code)
                if receiver.location:
                    self.send_header("Location", receiver.location)
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
def local_allowed(settings):
    """The local receivers of these tests are on 127.0.0.1 over http: allowed as an operator
    allows a receiver on premises."""
    settings.WEBHOOK_ALLOW_HTTP_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_ALLOW_NETWORKS = ["127.0.0.1/32"]
    return settings


@pytest.fixture
def hooked(settings_of, receiver, eager_tasks, local_allowed):
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
    queued, alice, settings_of, local_allowed, eager_tasks, django_capture_on_commit_callbacks
):
    settings = local_allowed
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
    # Generic: no "connection refused" that would tell a closed port from a filtered one.
    assert (delivery.status, delivery.last_error) == ("failed", "delivery failed")
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
    queued,
    alice,
    settings_of,
    receiver,
    local_allowed,
    django_capture_on_commit_callbacks,
    monkeypatch,
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


# --- outbound requests go to public addresses only (veridict/outbound.py) ---


def _deliver_to(url: str, settings_of, queued, alice, capture) -> WebhookDelivery:
    settings_of.webhook_url = url
    settings_of.save()
    item = review_claim(item=queued(), reviewer=alice)
    with capture(execute=True):
        review_confirm(item=item, reviewer=alice, rationale="fine")
    return WebhookDelivery.objects.get()


def test_a_receiver_on_loopback_is_refused_and_receives_nothing(
    queued, alice, settings_of, receiver, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOW_HTTP_HOSTS = ["127.0.0.1"]  # http allowed, the address is not
    delivery = _deliver_to(
        receiver.url, settings_of, queued, alice, django_capture_on_commit_callbacks
    )
    assert receiver.received == []
    assert delivery.status == "failed" and delivery.last_status_code is None
    assert delivery.last_error == "delivery refused: the URL or its address is not allowed"


def test_plain_http_is_refused_unless_the_operator_allows_the_host(
    queued, alice, settings_of, receiver, settings, eager_tasks, django_capture_on_commit_callbacks
):
    settings.WEBHOOK_ALLOW_NETWORKS = ["127.0.0.1/32"]  # the address allowed, http is not
    delivery = _deliver_to(
        receiver.url, settings_of, queued, alice, django_capture_on_commit_callbacks
    )
    assert receiver.received == []
    assert delivery.last_error.startswith("delivery refused")


def test_a_name_that_resolves_to_a_private_address_when_sending_is_refused(
    queued,
    alice,
    settings_of,
    receiver,
    settings,
    eager_tasks,
    django_capture_on_commit_callbacks,
    monkeypatch,
):
    """DNS rebinding: public when the URL is saved, 127.0.0.1 (where a server listens) when the
    webhook is sent. The check is on the address connected to, so nothing reaches it."""
    import socket

    from review.admin.policies import ReviewSettingsForm

    settings.WEBHOOK_ALLOW_HTTP_HOSTS = ["hooks.example.com"]
    port = receiver.server.server_address[1]
    answers = iter(["93.184.216.34", "127.0.0.1"])
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "hooks.example.com":
            address = next(answers)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    url = f"http://hooks.example.com:{port}/hook"
    form = ReviewSettingsForm(instance=settings_of)
    form.cleaned_data = {"webhook_url": url}
    assert form.clean_webhook_url() == url  # public at save time: accepted
    delivery = _deliver_to(url, settings_of, queued, alice, django_capture_on_commit_callbacks)
    assert receiver.received == []
    assert delivery.last_error.startswith("delivery refused")


def test_a_redirect_is_not_followed(
    queued, alice, settings_of, local_allowed, eager_tasks, django_capture_on_commit_callbacks
):
    target = Receiver()
    redirecting = Receiver(codes=[302], location=target.url)
    try:
        delivery = _deliver_to(
            redirecting.url, settings_of, queued, alice, django_capture_on_commit_callbacks
        )
        assert len(redirecting.received) == 1
        assert target.received == []
    finally:
        target.close()
        redirecting.close()
    assert (delivery.status, delivery.last_status_code) == ("failed", 302)
    assert delivery.last_error == "HTTP 302"


def test_a_receiver_that_never_answers_gets_the_same_error_as_a_closed_port(
    queued, alice, settings_of, local_allowed, eager_tasks, django_capture_on_commit_callbacks
):
    import socket

    local_allowed.WEBHOOK_TIMEOUT_SECONDS = 0.5
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts the connection, never answers
    try:
        delivery = _deliver_to(
            f"http://127.0.0.1:{silent.getsockname()[1]}/hook",
            settings_of,
            queued,
            alice,
            django_capture_on_commit_callbacks,
        )
    finally:
        silent.close()
    assert (delivery.status, delivery.last_error) == ("failed", "delivery failed")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://hooks.example.com/x", "only https"),
        ("http://hooks.example.com/x", "only https"),
        ("https://169.254.169.254/latest/meta-data", "not a public address"),
        ("https://127.0.0.1:6379/", "not a public address"),
        ("https://10.1.2.3/", "not a public address"),
        ("https://[::1]/", "not a public address"),
        ("https://[::ffff:127.0.0.1]/", "not a public address"),
        ("https://[fe80::1]/", "not a public address"),
        ("https://224.0.0.1/", "not a public address"),
        ("https://0.0.0.0/", "not a public address"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
    ],
)
def test_the_admin_form_refuses_a_webhook_url_that_is_not_public_https(settings_of, url, message):
    from review.admin.policies import ReviewSettingsForm

    form = ReviewSettingsForm(instance=settings_of)
    form.cleaned_data = {"webhook_url": url}
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=message):
        form.clean_webhook_url()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True),
        ("2606:2800:220:1:248:1893:25c8:1946", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("100.64.0.1", False),  # carrier-grade NAT
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
        ("ff0e::1", False),  # global multicast
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("2002:7f00:1::1", False),  # 6to4 of 127.0.0.1
    ],
)
def test_only_public_unicast_addresses_are_allowed(address, public):
    import ipaddress

    from veridict.outbound import address_public

    assert address_public(ipaddress.ip_address(address)) is public


# --- https: the checked connection still verifies the receiver's certificate for its name ---


def _tls_files(directory, name: str):
    """A CA and a server certificate for `name` signed by it, as PEM files: (ca, cert, key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from tests.conftest import certificate_make

    ca_key, server_key = (ec.generate_private_key(ec.SECP256R1()) for _ in "ab")
    ca = certificate_make("Webhook Test CA", ca_key, "Webhook Test CA", ca_key, ca=True)
    server = certificate_make(
        name, server_key, "Webhook Test CA", ca_key, ca=False, server_name=name
    )
    pem = serialization.Encoding.PEM
    files = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(server.public_bytes(pem))
    files[2].write_bytes(
        server_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


@pytest.fixture
def tls_receiver(tmp_path, monkeypatch, settings):
    """An https receiver on 127.0.0.1 whose certificate names `hooks.example.test`, a name
    that resolves there; its CA is trusted the way a system store is (SSL_CERT_FILE), and the
    loopback is allowed as an operator allows a receiver on premises."""
    import socket
    import ssl

    def serve(certificate_name: str) -> Receiver:
        ca, cert, key = _tls_files(tmp_path, certificate_name)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca))
        server = Receiver()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        server.server.socket = context.wrap_socket(server.server.socket, server_side=True)
        receivers.append(server)
        return server

    receivers: list[Receiver] = []
    real_getaddrinfo = socket.getaddrinfo

    def resolve(host, *args, **kwargs):
        if host == "hooks.example.test":
            return real_getaddrinfo("127.0.0.1", *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    settings.WEBHOOK_ALLOW_NETWORKS = ["127.0.0.1/32"]
    yield serve
    for server in receivers:
        server.close()


def test_an_https_receiver_gets_the_review_with_its_certificate_checked_for_its_name(
    queued, alice, settings_of, tls_receiver, eager_tasks, django_capture_on_commit_callbacks
):
    server = tls_receiver("hooks.example.test")
    port = server.server.server_address[1]
    delivery = _deliver_to(
        f"https://hooks.example.test:{port}/hook",
        settings_of,
        queued,
        alice,
        django_capture_on_commit_callbacks,
    )
    assert (delivery.status, delivery.last_status_code) == ("delivered", 200)
    ((headers, body),) = server.received
    assert headers["Host"] == f"hooks.example.test:{port}"
    assert json.loads(body)["decision"]


def test_an_https_receiver_whose_certificate_names_another_host_gets_nothing(
    queued, alice, settings_of, tls_receiver, eager_tasks, django_capture_on_commit_callbacks
):
    server = tls_receiver("elsewhere.example.test")
    port = server.server.server_address[1]
    delivery = _deliver_to(
        f"https://hooks.example.test:{port}/hook",
        settings_of,
        queued,
        alice,
        django_capture_on_commit_callbacks,
    )
    assert server.received == []
    assert delivery.last_status_code is None
    assert delivery.last_error == "delivery failed"
