"""Roles: the three groups exist after migrate with the permissions staff/roles.py declares."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import CommandError, call_command
from django.core.management.sql import emit_post_migrate_signal

from staff.roles import ADMINISTRATOR, COMPLIANCE_OFFICER, REVIEWER, roles_sync

pytestmark = pytest.mark.django_db


def perms_of(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {
        f"{app}.{codename}"
        for app, codename in group.permissions.values_list("content_type__app_label", "codename")
    }


def test_the_three_role_groups_exist_after_migrate() -> None:
    assert set(Group.objects.values_list("name", flat=True)) >= {
        REVIEWER,
        COMPLIANCE_OFFICER,
        ADMINISTRATOR,
    }


def test_a_reviewer_may_review_and_read_decisions_but_not_erase_or_change_settings() -> None:
    reviewer = perms_of(REVIEWER)
    assert {
        "review.review_decision",
        "review.approve_override",
        "review.assign_owner",
        "audit.view_decision",
        "review.view_reviewitem",
    } <= reviewer
    assert "review.review_all_systems" not in reviewer
    assert "audit.erase_subject" not in reviewer
    assert "review.change_reviewsettings" not in reviewer
    assert "staff.view_adminevent" not in reviewer


def test_a_compliance_officer_reads_everything_and_erases_but_does_not_review() -> None:
    compliance = perms_of(COMPLIANCE_OFFICER)
    every_view = {
        f"{app}.{codename}"
        for app, codename in Permission.objects.filter(codename__startswith="view_").values_list(
            "content_type__app_label", "codename"
        )
    }
    assert every_view <= compliance
    assert {"audit.erase_subject", "review.view_oversight", "review.review_all_systems"} <= (
        compliance
    )
    assert "review.review_decision" not in compliance
    assert not any(name.split(".")[1].startswith(("add_", "change_")) for name in compliance)


def test_an_administrator_has_every_permission() -> None:
    assert Group.objects.get(name=ADMINISTRATOR).permissions.count() == Permission.objects.count()


def test_compliance_officers_publish_bias_audits_and_reviewers_do_not() -> None:
    assert "bias.publish_audit" in perms_of(COMPLIANCE_OFFICER)
    assert "bias.publish_audit" not in perms_of(REVIEWER)


def test_roles_sync_restores_groups_and_permissions_changed_by_hand() -> None:
    Group.objects.get(name=REVIEWER).permissions.clear()
    Group.objects.get(name=COMPLIANCE_OFFICER).delete()
    extra = Permission.objects.get(codename="delete_user")
    Group.objects.get(name=ADMINISTRATOR).permissions.remove(extra)

    roles_sync()
    roles_sync()  # twice: nothing changes the second time

    assert "review.review_decision" in perms_of(REVIEWER)
    assert "audit.erase_subject" in perms_of(COMPLIANCE_OFFICER)
    assert "auth.delete_user" in perms_of(ADMINISTRATOR)


def test_a_user_in_the_reviewer_group_has_its_permissions(django_user_model) -> None:
    user = User.objects.create_user("rita", is_staff=True)
    user.groups.add(Group.objects.get(name=REVIEWER))
    user = User.objects.get(pk=user.pk)  # a fresh object: permissions are cached per object
    assert user.has_perm("review.review_decision")
    assert not user.has_perm("audit.erase_subject")


def test_create_staff_user_makes_a_staff_account_in_the_role(capsys) -> None:
    call_command("create_staff_user", "carla", "--role", COMPLIANCE_OFFICER)
    user = User.objects.get(username="carla")
    assert user.is_staff and not user.is_superuser
    assert not user.has_usable_password()
    assert list(user.groups.values_list("name", flat=True)) == [COMPLIANCE_OFFICER]
    assert "changepassword carla" in capsys.readouterr().out


def test_create_staff_user_refuses_an_unknown_role_and_an_existing_name() -> None:
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("create_staff_user", "bob", "--role", "janitor")
    call_command("create_staff_user", "bob", "--role", REVIEWER)
    with pytest.raises(CommandError, match="exists already"):
        call_command("create_staff_user", "bob", "--role", REVIEWER)


def test_the_role_groups_and_their_permissions_come_back_after_a_flush() -> None:
    Group.objects.all().delete()
    # What `flush` does after emptying the tables (a transactional test's teardown does that):
    # post_migrate without the `apps` that migrate passes.
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    assert "review.review_decision" in perms_of(REVIEWER)
    assert "audit.erase_subject" in perms_of(COMPLIANCE_OFFICER)
