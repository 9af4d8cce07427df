"""The bias dashboard in Chromium: the public view, filters, publishing an audit that verifies."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Permission, User

from tests.audit.conftest import AISystemFactory
from tests.bias.test_dashboard import LOANS, blocks_record
from timestamping.services import batch_seal

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a-long-password-for-the-browser-test"


@pytest.fixture
def loans():
    system = AISystemFactory(slug="loans", name="Loans", is_public=True)
    blocks_record(system, LOANS)
    return system


def test_the_public_sees_the_charts_and_can_filter(page, live_server, loans, screenshot) -> None:
    page.goto(live_server.url + "/bias/")
    page.get_by_role("link", name="Loans").click()
    page.wait_for_url(re.compile(r"/bias/loans/$"))
    assert page.locator("svg.bias-chart").count() >= 3
    assert page.get_by_text("Public view").is_visible()
    summary = page.locator("ul.sentences li").first.inner_text()
    assert re.search(r"are selected at \d\.\d\d times the rate of", summary)
    screenshot("public")
    page.get_by_label("race").check()
    page.get_by_label("The final decision, after human review").check()
    page.get_by_role("button", name="Show").click()
    page.wait_for_url(re.compile(r"outcome=final"))
    assert page.get_by_role("heading", name="By race alone").is_visible()
    assert page.get_by_label("race").is_checked()
    screenshot("intersection")
    page.get_by_role("link", name="Printable summary (LL144)").click()
    assert page.get_by_role("heading", name="Bias audit summary: Loans").is_visible()
    page.emulate_media(media="print")
    assert not page.locator(".site-header").is_visible()
    screenshot("summary-print")


def test_a_compliance_officer_publishes_an_audit_that_verifies(
    page, live_server, loans, screenshot
) -> None:
    officer = User.objects.create_user("officer", password=PASSWORD, is_staff=True)
    officer.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_outcomecount", "publish_audit"])
    )
    page.goto(f"{live_server.url}/admin/login/?next=/bias/loans/")
    page.get_by_label("Username").fill("officer")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url(re.compile(r"/bias/loans/$"))
    assert page.get_by_text("Staff view").is_visible()
    page.get_by_role("button", name="Publish audit").click()
    page.wait_for_url(re.compile(r"/bias/audits/\d+$"))
    assert page.get_by_text("awaits sealing").is_visible()
    batch_seal()
    page.reload()
    assert page.get_by_text("Verified: this report's SHA-256 is in ledger entry").is_visible()
    screenshot("published")
