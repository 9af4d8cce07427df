"""Creates the three staff role groups; staff/roles.py `roles_sync` (run after every migrate)
gives them their permissions."""

from django.db import migrations

ROLE_NAMES = ["reviewer", "compliance officer", "administrator"]


def roles_create(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    for name in ROLE_NAMES:
        group_model.objects.using(schema_editor.connection.alias).get_or_create(name=name)


def roles_delete(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    group_model.objects.using(schema_editor.connection.alias).filter(name__in=ROLE_NAMES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("staff", "0001_initial"),
    ]

    operations = [migrations.RunPython(roles_create, roles_delete)]
