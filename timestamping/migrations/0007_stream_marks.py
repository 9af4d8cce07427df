"""Stream marks: the seq of every 256th leaf of each system log, so that a leaf's index in its
stream is found by counting at most 255 entries (selectors.stream_leaf_index)."""

from django.db import migrations, models

MARK_TABLE = "timestamping_streammark"
EVERY = 256  # models.STREAM_MARK_EVERY when this migration was written


def marks_backfill(apps, schema_editor):
    """Marks for the stream leaves sealed before this migration: a stream's sealed entries, in
    seq order, are its tree's leaves (the sealer appends them in log order)."""
    entry = apps.get_model("timestamping", "Entry")._meta.db_table
    batch = apps.get_model("timestamping", "Batch")._meta.db_table
    schema_editor.execute(
        f"INSERT INTO {MARK_TABLE} (stream, leaf_index, seq) "  # noqa: S608 - model table names
        "SELECT stream, position, seq FROM ("
        "SELECT stream, seq, row_number() OVER (PARTITION BY stream ORDER BY seq) - 1 AS position "
        f"FROM {entry} WHERE stream <> '' "
        f"AND seq <= (SELECT coalesce(max(last_seq), 0) FROM {batch})"
        # position a multiple of EVERY; integer division, as `%` would be a placeholder here.
        f") numbered WHERE position / {EVERY} * {EVERY} = position"
    )


def mark_triggers_create(apps, schema_editor):
    # The function is migration 0002's; marks are ledger rows like the stream heads.
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE TRIGGER {MARK_TABLE}_append_only BEFORE UPDATE OR DELETE ON {MARK_TABLE} "
        "FOR EACH ROW EXECUTE FUNCTION veridict_refuse_change()"
    )
    schema_editor.execute(
        f"CREATE TRIGGER {MARK_TABLE}_no_truncate BEFORE TRUNCATE ON {MARK_TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION veridict_refuse_change()"
    )


def mark_triggers_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {MARK_TABLE}_append_only ON {MARK_TABLE}")
    schema_editor.execute(f"DROP TRIGGER IF EXISTS {MARK_TABLE}_no_truncate ON {MARK_TABLE}")


class Migration(migrations.Migration):
    dependencies = [
        ("timestamping", "0006_system_log_streams"),
    ]

    operations = [
        migrations.CreateModel(
            name="StreamMark",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("stream", models.CharField(max_length=64)),
                ("leaf_index", models.PositiveBigIntegerField()),
                ("seq", models.BigIntegerField()),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("stream", "leaf_index"), name="streammark_unique_index"
                    ),
                    models.UniqueConstraint(fields=("stream", "seq"), name="streammark_unique_seq"),
                ],
            },
        ),
        migrations.RunPython(marks_backfill, migrations.RunPython.noop),
        migrations.RunPython(mark_triggers_create, mark_triggers_drop),
    ]
