"""Admin login lockout (django-axes): too many refused logins lock that username at that address."""

from __future__ import annotations

import pytest
from django.test import Client

from staff.models import AdminEvent
from tests.staff.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(client: Client, username: str, password: str = PASSWORD):
    return client.post("/admin/login/?next=/admin/", {"username": username, "password": password})


def test_after_the_failure_limit_even_the_right_password_is_refused(make_user, settings) -> None:
    make_user("ana", role="reviewer")
    client = Client(REMOTE_ADDR="198.51.100.4")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "ana", "guess").status_code == 200

    locked = login(client, "ana", "last guess")
    assert locked.status_code == 429
    assert "Too many failed logins" in locked.content.decode()

    refused = login(client, "ana")
    assert refused.status_code == 429
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still sent to the login page
    assert AdminEvent.objects.filter(kind=AdminEvent.Kind.LOCKED_OUT, username="ana").exists()
    assert not AdminEvent.objects.filter(kind=AdminEvent.Kind.LOGIN).exists()


def test_a_lockout_holds_only_for_that_username_at_that_address(make_user, settings) -> None:
    make_user("ana", role="reviewer")
    make_user("bob", role="reviewer")
    attacker = Client(REMOTE_ADDR="198.51.100.4")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(attacker, "ana", "guess")
    assert login(attacker, "ana").status_code == 429

    assert login(Client(REMOTE_ADDR="198.51.100.4"), "bob").status_code == 302
    assert login(Client(REMOTE_ADDR="192.0.2.10"), "ana").status_code == 302


def test_a_successful_login_before_the_limit_resets_the_count(make_user, settings) -> None:
    make_user("ana", role="reviewer")
    client = Client(REMOTE_ADDR="198.51.100.4")
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        login(client, "ana", "typo")
    assert login(client, "ana").status_code == 302
    client.post("/admin/logout/")

    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert login(client, "ana", "typo").status_code == 200
    assert login(client, "ana").status_code == 302


def test_behind_a_trusted_proxy_the_forwarded_address_is_the_one_locked_out(
    make_user, settings
) -> None:
    settings.TRUSTED_PROXY_COUNT = 1
    make_user("ana", role="reviewer")
    proxy = "10.0.0.2"
    attacker = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="spoofed, 198.51.100.4")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        login(attacker, "ana", "guess")
    assert login(attacker, "ana").status_code == 429

    colleague = Client(REMOTE_ADDR=proxy, HTTP_X_FORWARDED_FOR="192.0.2.10")
    assert login(colleague, "ana").status_code == 302
    assert AdminEvent.objects.filter(
        kind=AdminEvent.Kind.LOGIN_FAILED, ip_address="198.51.100.4"
    ).exists()
