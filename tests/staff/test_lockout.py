"""Admin login lockout (django-axes): too many refused logins lock that username at that address,
and many more from any addresses lock the username everywhere until an administrator unlocks it."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
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


def addresses(count: int) -> list[str]:
    return [f"203.0.113.{n}" for n in range(1, count + 1)]


def test_one_username_refused_from_25_addresses_is_locked_at_every_address(
    make_user, settings
) -> None:
    make_user("ana", role="reviewer")
    statuses = [
        login(Client(REMOTE_ADDR=address), "ana", "guess").status_code for address in addresses(25)
    ]

    # One guess per address never reaches the per-address limit; the username's total does.
    limit = settings.LOGIN_USERNAME_FAILURE_LIMIT
    assert statuses[: limit - 1] == [200] * (limit - 1)
    assert set(statuses[limit - 1 :]) == {429}
    fresh = login(Client(REMOTE_ADDR="192.0.2.99"), "ana")
    assert fresh.status_code == 429
    assert "Too many failed logins" in fresh.content.decode()
    locked = AdminEvent.objects.filter(kind=AdminEvent.Kind.LOCKED_OUT, username="ana")
    assert locked.filter(ip_address=addresses(limit)[-1]).exists()
    assert not AdminEvent.objects.filter(kind=AdminEvent.Kind.LOGIN).exists()


def test_failures_of_one_username_below_its_limit_lock_nothing(make_user, settings) -> None:
    make_user("ana", role="reviewer")
    for address in addresses(settings.LOGIN_USERNAME_FAILURE_LIMIT - 1):
        assert login(Client(REMOTE_ADDR=address), "ana", "guess").status_code == 200
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "ana").status_code == 302


def test_a_username_locked_everywhere_leaves_other_usernames_alone(make_user) -> None:
    make_user("ana", role="reviewer")
    make_user("bob", role="reviewer")
    for address in addresses(25):
        login(Client(REMOTE_ADDR=address), "ana", "guess")
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "ana").status_code == 429

    # Even from an address that took part in the attack.
    assert login(Client(REMOTE_ADDR=addresses(25)[-1]), "bob").status_code == 302
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "bob").status_code == 302


def test_an_administrator_unlocks_the_username_by_deleting_its_access_attempts_in_the_admin(
    make_user,
) -> None:
    make_user("ana", role="reviewer")
    make_user("root", role="administrator")
    for address in addresses(25):
        login(Client(REMOTE_ADDR=address), "ana", "guess")
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "ana").status_code == 429

    administrator = Client(REMOTE_ADDR="192.0.2.1")
    assert login(administrator, "root").status_code == 302
    listed = administrator.get("/admin/axes/accessattempt/?username=ana")
    assert listed.status_code == 200
    attempts = [attempt.pk for attempt in listed.context["cl"].result_list]
    assert len(attempts) == 26  # one per attacking address, one for the refused real login
    deleted = administrator.post(
        "/admin/axes/accessattempt/",
        {"action": "delete_selected", "_selected_action": attempts, "post": "yes"},
    )
    assert deleted.status_code == 302

    assert login(Client(REMOTE_ADDR="192.0.2.99"), "ana").status_code == 302


def test_the_reset_command_unlocks_a_username_locked_everywhere(make_user) -> None:
    make_user("ana", role="reviewer")
    for address in addresses(25):
        login(Client(REMOTE_ADDR=address), "ana", "guess")
    assert login(Client(REMOTE_ADDR="192.0.2.99"), "ana").status_code == 429

    call_command("axes_reset_username", "ana", stdout=io.StringIO())

    assert login(Client(REMOTE_ADDR="192.0.2.99"), "ana").status_code == 302
