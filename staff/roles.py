"""The staff roles: Django groups "reviewer", "compliance officer" and "administrator".

Code is the source of truth for what each role may do. The data migration 0002_roles creates the
three groups; their permissions are set by `roles_sync`, which a post_migrate handler
(staff/apps.py) runs after every `migrate` and every test-database flush. It first has Django
create every app's permissions (create_permissions is idempotent), because Django itself only
makes them in post_migrate, app by app, and later apps' permissions (bias, review) would
otherwise not exist yet. A permission the code names but no app defines (yet) is skipped and
reported, and picked up by the next `migrate` once it exists. Changes made to these groups by
hand in the admin are undone by the next `migrate`: make another group for local variations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.contrib.auth.management import create_permissions
from django.db.models import Q

REVIEWER = "reviewer"
COMPLIANCE_OFFICER = "compliance officer"
ADMINISTRATOR = "administrator"


@dataclass(frozen=True)
class Role:
    # "app_label.codename"
    permissions: frozenset[str] = field(default_factory=frozenset)
    # Every view_* permission of every app: reads everything.
    view_all: bool = False
    # Every permission there is.
    everything: bool = False


ROLES: dict[str, Role] = {
    # Reviews the decisions of the AI systems assigned to them (ReviewSettings.reviewers): the
    # review services and every admin list of their models check the assignment
    # (review.permissions.scoped); these permissions open the pages. No timestamping.view_entry:
    # a log entry names its system only inside its canonical bytes, so the entry list cannot be
    # scoped cheaply; each entry's receipt is scoped instead (audit/access.py).
    REVIEWER: Role(
        permissions=frozenset(
            {
                "audit.view_aisystem",
                "audit.view_decision",
                "audit.view_modelversion",
                "audit.view_outcome",
                "review.view_reviewitem",
                "review.view_reviewaction",
                "review.view_decisionowner",
                "review.view_reviewsettings",
                "review.view_policyset",
                "review.review_decision",
                "review.approve_override",
                "review.assign_owner",
                "staff.view_unattributeddecision",
            }
        )
    ),
    # Reads everything, publishes bias audits, erases personal data, watches oversight and
    # attributes decisions to owners, on every system. Reviewing itself stays with reviewers:
    # who audits the reviews should not be the one making them.
    COMPLIANCE_OFFICER: Role(
        permissions=frozenset(
            {
                "audit.erase_subject",
                "audit.export_evidence",
                "bias.publish_audit",
                "review.view_oversight",
                "review.review_all_systems",
                "review.assign_owner",
            }
        ),
        view_all=True,
    ),
    ADMINISTRATOR: Role(everything=True),
}


def role_permission_ids(role: Role, *, apps: Apps, using: str) -> tuple[set[int], list[str]]:
    """The ids of the role's permissions, and the ones it names that no app defines."""
    permission_model = apps.get_model("auth", "Permission")
    permissions = permission_model.objects.using(using)
    if role.everything:
        return set(permissions.values_list("pk", flat=True)), []
    wanted = Q(pk__in=[])
    for name in role.permissions:
        app_label, codename = name.split(".", 1)
        wanted |= Q(content_type__app_label=app_label, codename=codename)
    if role.view_all:
        wanted |= Q(codename__startswith="view_")
    found = permissions.filter(wanted).values_list("pk", "content_type__app_label", "codename")
    names = {f"{app_label}.{codename}" for _, app_label, codename in found}
    return {pk for pk, _, _ in found}, sorted(role.permissions - names)


def roles_sync(*, apps: Apps = global_apps, using: str = "default") -> dict[str, list[str]]:
    """Creates the role groups if missing and sets their permissions to exactly what ROLES says;
    the permissions named but not defined, per role."""
    for app_config in apps.get_app_configs():
        create_permissions(app_config, verbosity=0, using=using, apps=apps)
    group_model = apps.get_model("auth", "Group")
    missing: dict[str, list[str]] = {}
    for name, role in ROLES.items():
        group, _ = group_model.objects.using(using).get_or_create(name=name)
        permission_ids, missing[name] = role_permission_ids(role, apps=apps, using=using)
        group.permissions.set(permission_ids)
    return missing
