"""The admin's audit trail: logins, refused logins, logouts and admin changes become AdminEvents."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from staff.models import AdminEvent
from tests.staff.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def login(client: Client, username: str, password: str = PASSWORD, **extra: str):
    return client.post(
        "/admin/login/?next=/admin/", {"username": username, "password": password}, **extra
    )


def test_an_admin_login_and_logout_are_recorded_with_user_and_address(make_user) -> None:
    ana = make_user("ana", role="reviewer")
    client = Client(REMOTE_ADDR="203.0.113.7")
    assert login(client, "ana").status_code == 302
    assert client.post("/admin/logout/").status_code == 200

    events = list(AdminEvent.objects.order_by("id").values_list("kind", "user", "ip_address"))
    assert events == [
        (AdminEvent.Kind.LOGIN, ana.pk, "203.0.113.7"),
        (AdminEvent.Kind.LOGOUT, ana.pk, "203.0.113.7"),
    ]


def test_a_refused_login_is_recorded_with_the_username_typed_and_no_password(make_user) -> None:
    make_user("ana", role="reviewer")
    response = login(Client(), "ana", "wrong password")
    assert response.status_code == 200  # the form again, with its error

    event = AdminEvent.objects.get()
    assert (event.kind, event.user, event.username) == (AdminEvent.Kind.LOGIN_FAILED, None, "ana")
    assert "wrong password" not in str(event.detail)


def test_an_object_added_and_changed_in_the_admin_is_recorded(make_user) -> None:
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(root)
    response = client.post("/admin/auth/group/add/", {"name": "auditors"})
    assert response.status_code == 302
    group = Group.objects.get(name="auditors")
    client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "external auditors"})

    events = AdminEvent.objects.filter(object_id=str(group.pk)).order_by("id")
    assert [(e.kind, e.user, e.object_repr) for e in events] == [
        (AdminEvent.Kind.ADDITION, root, "auditors"),
        (AdminEvent.Kind.CHANGE, root, "external auditors"),
    ]
    assert events[1].detail == {"change": [{"changed": {"fields": ["Name"]}}]}


def test_deleting_several_objects_at_once_records_each_deletion(make_user) -> None:
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(root)
    groups = [Group.objects.create(name=f"temporary {n}") for n in range(3)]

    response = client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [g.pk for g in groups], "post": "yes"},
    )

    assert response.status_code == 302
    assert not Group.objects.filter(name__startswith="temporary").exists()
    deletions = AdminEvent.objects.filter(kind=AdminEvent.Kind.DELETION)
    assert sorted(deletions.values_list("object_repr", flat=True)) == [
        f"temporary {n}" for n in range(3)
    ]
    assert {event.user for event in deletions} == {root}


def test_deleting_one_object_through_the_delete_action_is_recorded_once(make_user) -> None:
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    client.force_login(root)
    group = Group.objects.create(name="temporary")

    client.post(
        "/admin/auth/group/",
        {"action": "delete_selected", "_selected_action": [group.pk], "post": "yes"},
    )

    assert AdminEvent.objects.filter(kind=AdminEvent.Kind.DELETION).count() == 1


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("reviewer", False), ("compliance officer", True), ("administrator", True), (None, False)],
)
def test_the_admin_events_are_readable_by_compliance_and_administrators_only(
    make_user, role, allowed
) -> None:
    user = make_user("someone", role=role)
    client = Client()
    login(client, "someone")
    event = AdminEvent.objects.get(kind=AdminEvent.Kind.LOGIN)

    changelist = client.get("/admin/staff/adminevent/")
    change = client.get(f"/admin/staff/adminevent/{event.pk}/change/")

    assert changelist.status_code == (200 if allowed else 403)
    assert change.status_code == (200 if allowed else 403)
    if allowed:
        assert [row.user for row in changelist.context["cl"].result_list] == [user]


def test_nobody_can_add_change_or_delete_an_admin_event(make_user) -> None:
    root = User.objects.create_superuser("root", password=PASSWORD)
    client = Client()
    login(client, "root")
    event = AdminEvent.objects.get()

    assert client.get("/admin/staff/adminevent/add/").status_code == 403
    assert client.post(f"/admin/staff/adminevent/{event.pk}/change/", {}).status_code == 403
    assert (
        client.post(f"/admin/staff/adminevent/{event.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    client.post(
        "/admin/staff/adminevent/",
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert AdminEvent.objects.filter(pk=event.pk, user=root).exists()
