"""On PostgreSQL, the triggers that make ledger tables append-only.

Ledger rows are written once, so the triggers refuse every UPDATE, DELETE and TRUNCATE, sealed or
not. Tests that must tamper bypass them with `SET session_replication_role = replica`.
"""

from django.db import migrations

LEDGER_TABLES = [
    "timestamping_entry",
    "timestamping_tile",
    "timestamping_batch",
    "timestamping_logkey",
    "timestamping_anchor",
]

FUNCTION = """
CREATE OR REPLACE FUNCTION veridict_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'veridict: % on % refused: the ledger is append-only', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""


def triggers_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION, params=None)
    for table in LEDGER_TABLES:
        schema_editor.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION veridict_refuse_change()"
        )
        schema_editor.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION veridict_refuse_change()"
        )


def triggers_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in LEDGER_TABLES:
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS veridict_refuse_change()")


class Migration(migrations.Migration):
    dependencies = [("timestamping", "0001_initial")]

    operations = [
        migrations.RunPython(triggers_create, triggers_drop),
    ]
