"""The review flow in a real browser: a reviewer claims and overrides, a second one approves
(four-eyes); the override joins the decision's receipt chain and verifies once sealed; the
system's webhook fires once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from playwright.sync_api import Page, expect
from veridict_verify.receipt import receipt_verify

from audit.serializers import DecisionSerializer
from audit.services.decisions import decision_record
from review.models import ReviewAction, ReviewItem, ReviewSettings, WebhookDelivery
from review.services import review_item_open
from review.tasks import webhooks_sweep_task
from review.webhooks import SIGNATURE_HEADER, webhook_deliver, webhook_secret
from review.webhooks import webhook_signature_check as signature_ok
from staff.models import AdminEvent
from tests.audit.conftest import AISystemFactory
from timestamping import keys
from veridict.celery import app as celery_app

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "review flow password 42"  # noqa: S105 (a test account)


class WebhookReceiver(BaseHTTPRequestHandler):
    """A system's webhook endpoint: keeps every request it gets."""

    received: list[tuple[dict[str, str], bytes]]

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


@pytest.fixture
def webhook_server() -> Iterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []
    handler = type("Receiver", (WebhookReceiver,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks/veridict", received
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run in the process that queues them, right after its commit: the webhook task of
    the live server's request runs in the live server's thread."""
    before = celery_app.conf.task_always_eager
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = before


def reviewer(username: str) -> User:
    user = User.objects.create_user(username, password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="reviewer"))
    return user


def log_in(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/admin/login/?next=/admin/")
    page.get_by_label("Username:").fill(username)
    page.get_by_label("Password:").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("link", name="Review queue")).to_be_visible()


def wait_for(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_claim_override_and_second_approval_in_the_browser(
    page: Page, live_server, screenshot, webhook_server, eager_tasks, seal, tsa_ca_pem, settings
) -> None:
    hook_url, received = webhook_server
    # The local receiver, allowed as an operator allows one on premises (docs/review.md).
    settings.WEBHOOK_ALLOW_HTTP_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_ALLOW_NETWORKS = ["127.0.0.1/32"]
    base = live_server.url
    system = AISystemFactory(name="Loan scorer", slug="loan-scorer")
    rita, rob = reviewer("rita"), reviewer("rob")
    review_settings = ReviewSettings.objects.create(
        system=system, four_eyes=True, webhook_url=hook_url
    )
    review_settings.reviewers.add(rita, rob)
    request = DecisionSerializer(
        data={
            "client_decision_id": "loan-e2e-1",
            "model": {"name": "loan-scorer", "version": "4.2.0"},
            "occurred_at": "2026-11-26T10:15:00Z",
            "inputs": {"income": 42000, "amount": 15000},
            "output": {"label": "deny", "score": 0.31},
            "confidence": 0.82,
            "explanation": {"main_factors": ["debt-to-income ratio"]},
            "solely_automated": False,
            "subject_ref": "applicant-e2e",
        }
    )
    request.is_valid(raise_exception=True)
    decision, _ = decision_record(system=system, data=request.validated_data)
    item = review_item_open(decision=decision, by=None)

    # The first reviewer claims the item from the queue and overrides it.
    log_in(page, base, "rita")
    page.get_by_role("link", name="Review queue").click()
    screenshot("queue")
    page.get_by_role("link", name="loan-e2e-1").click()
    expect(page.get_by_text("debt-to-income ratio")).to_be_visible()
    page.get_by_role("button", name="Claim this review").click()
    expect(page.get_by_text("Claimed: loan-e2e-1 is now claimed.")).to_be_visible()
    page.get_by_label("New label").fill("approve")
    page.get_by_label("Why you override it").fill("Income was misread: the payslip shows 52,000.")
    screenshot("override-filled")
    page.get_by_role("button", name="Override", exact=True).click()
    expect(page.get_by_text("until a second reviewer approves the override")).to_be_visible()
    item.refresh_from_db()
    assert (item.status, item.proposed_output) == (
        ReviewItem.Status.AWAITING_APPROVAL,
        {"label": "approve"},
    )
    # Four-eyes: the overrider is offered no approval of their own override.
    expect(page.get_by_role("button", name="Approve the override")).to_have_count(0)
    assert received == []
    page.get_by_role("button", name="Log out").click()

    # A second reviewer approves it.
    log_in(page, base, "rob")
    page.goto(f"{base}/admin/review/reviewitem/?status=awaiting_approval")
    page.get_by_role("link", name="loan-e2e-1").click()
    expect(page.get_by_text('proposes {"label": "approve"}')).to_be_visible()
    page.get_by_label("Why you approve or reject it").fill("Checked the payslip too.")
    screenshot("approval")
    page.get_by_role("button", name="Approve the override").click()
    expect(page.get_by_text("Approved the override: loan-e2e-1 is now closed.")).to_be_visible()

    item.refresh_from_db()
    assert (item.status, item.result, item.final_output) == (
        ReviewItem.Status.CLOSED,
        "overridden",
        {"label": "approve"},
    )
    override = ReviewAction.objects.get(decision=decision, kind="override")
    approve = ReviewAction.objects.get(decision=decision, kind="approve")
    assert (override.actor, approve.actor) == (rita, rob)
    steps = {
        (event.username, event.detail["action"])
        for event in AdminEvent.objects.filter(kind=AdminEvent.Kind.REVIEW)
    }
    assert steps == {("rita", "claim"), ("rita", "override"), ("rob", "approve")}
    assert set(
        AdminEvent.objects.filter(kind=AdminEvent.Kind.LOGIN).values_list("username", flat=True)
    ) == {"rita", "rob"}

    # The webhook fired once, signed; running the task and the sweep again sends nothing more.
    wait_for(lambda: len(received) >= 1)
    delivery = WebhookDelivery.objects.get()
    webhook_deliver(delivery_id=delivery.pk)
    webhooks_sweep_task()
    time.sleep(0.5)
    assert len(received) == 1
    headers, body = received[0]
    assert signature_ok(
        secret=webhook_secret(system=system), header=headers[SIGNATURE_HEADER], body=body
    )
    payload = json.loads(body)
    assert payload["decision"]["id"] == str(decision.entry.uuid)
    assert payload["review"]["final_output"] == {"label": "approve"}
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (WebhookDelivery.Status.DELIVERED, 1)

    # The override is in the decision's receipt chain, and its own receipt verifies once sealed.
    receipt_url = f"{base}/api/v1/entries/{decision.entry.uuid}/receipt"
    chain = page.request.get(receipt_url).json()["review_chain"]
    assert [(link["kind"], link["id"]) for link in chain] == [
        ("override", str(override.entry.uuid)),
        ("approve", str(approve.entry.uuid)),
    ]
    pending = page.request.get(f"{base}/api/v1/entries/{override.entry.uuid}/receipt").json()
    assert pending["proof"] is None
    seal()
    sealed = page.request.get(f"{base}/api/v1/entries/{override.entry.uuid}/receipt").json()
    report = receipt_verify(sealed, keys=[keys.verifier_key()], tsa_ca_pem=tsa_ca_pem)
    assert report.ok, report.as_dict()

    # The decision's admin page shows the chain, each entry checked.
    page.goto(f"{base}/admin/audit/decision/{decision.pk}/change/")
    chain_rows = page.locator("table.review-chain tbody tr")
    expect(chain_rows).to_have_count(2)
    expect(page.locator("td.review-verify-true")).to_have_count(2)
    expect(page.get_by_text("DOES NOT VERIFY")).to_have_count(0)
    assert screenshot("decision-chain").exists()


def test_a_compliance_officer_reads_oversight_analytics_and_admin_activity(
    page: Page, live_server, screenshot
) -> None:
    from review.services import review_claim, review_confirm, review_override

    base = live_server.url
    system = AISystemFactory(name="CV screener", slug="cv-screener")
    rita = reviewer("rita")
    ReviewSettings.objects.create(system=system).reviewers.add(rita)
    officer = User.objects.create_user("carla", password=PASSWORD, is_staff=True)
    officer.groups.add(Group.objects.get(name="compliance officer"))
    for n in range(4):
        request = DecisionSerializer(
            data={
                "client_decision_id": f"cv-{n}",
                "model": {"name": "cv-screener", "version": "1.0"},
                "occurred_at": "2026-11-26T10:15:00Z",
                "inputs": {"years_experience": n},
                "output": {"label": "reject"},
                "solely_automated": False,
                "subject_ref": f"candidate-{n}",
                "protected_attributes": {"sex": "female" if n % 2 else "male"},
            }
        )
        request.is_valid(raise_exception=True)
        decision, _ = decision_record(system=system, data=request.validated_data)
        item = review_claim(item=review_item_open(decision=decision, by=None), reviewer=rita)
        if n == 0:
            review_override(item=item, reviewer=rita, rationale="r", output={"label": "hire"})
        else:
            review_confirm(item=item, reviewer=rita, rationale="r")

    log_in(page, base, "carla")
    page.get_by_role("link", name="Oversight analytics").click()
    page.get_by_label("AI system").select_option(label="CV screener")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("cell", name="rita", exact=True)).to_be_visible()
    expect(page.get_by_role("heading", name="CV screener: sex")).to_be_visible()
    screenshot("oversight")
    page.goto(f"{base}/admin/")
    page.get_by_role("link", name="Admin activity").click()
    expect(page.get_by_role("cell", name="carla", exact=True).first).to_be_visible()
    screenshot("admin-activity")
