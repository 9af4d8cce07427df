"""Batch.skipped_seqs (one number per skipped seq) becomes skipped_ranges ([first, last] pairs).

Existing rows are rewritten in place rather than kept beside a new column: the skipped seqs are not
part of the hashed batch header (verify_ledger recounts them against the tree and the entries), so
the pairs say exactly what the numbers said, and one format is all any reader has to know. Batch
rows are append-only, so on PostgreSQL the conversion switches the table's append-only trigger off
for this migration's own transaction: ALTER TABLE holds an ACCESS EXCLUSIVE lock until the commit,
so no other session can write a batch meanwhile, and a failure rolls the switch back with the rest.
Only batches that skipped something are touched: an empty list reads the same in both formats.
"""

from django.db import migrations

TABLE = "timestamping_batch"
TRIGGER = f"{TABLE}_append_only"


def _ranges(seqs):
    ranges = []
    for seq in sorted(set(seqs)):
        if ranges and ranges[-1][1] == seq - 1:
            ranges[-1][1] = seq
        else:
            ranges.append([seq, seq])
    return ranges


def _seqs(ranges):
    return [seq for first, last in ranges for seq in range(first, last + 1)]


def _rewrite(apps, schema_editor, convert):
    Batch = apps.get_model("timestamping", "Batch")
    on_postgres = schema_editor.connection.vendor == "postgresql"
    if on_postgres:
        schema_editor.execute(f"ALTER TABLE {TABLE} DISABLE TRIGGER {TRIGGER}")
    rows = Batch.objects.exclude(skipped_ranges=[]).values_list("pk", "skipped_ranges")
    for pk, stored in rows.iterator():
        Batch.objects.filter(pk=pk).update(skipped_ranges=convert(stored))
    if on_postgres:
        schema_editor.execute(f"ALTER TABLE {TABLE} ENABLE TRIGGER {TRIGGER}")


def seqs_to_ranges(apps, schema_editor):
    _rewrite(apps, schema_editor, _ranges)


def ranges_to_seqs(apps, schema_editor):
    _rewrite(apps, schema_editor, _seqs)


class Migration(migrations.Migration):
    dependencies = [("timestamping", "0004_anchor_reorg")]

    operations = [
        migrations.RenameField(
            model_name="batch", old_name="skipped_seqs", new_name="skipped_ranges"
        ),
        migrations.RunPython(seqs_to_ranges, ranges_to_seqs),
    ]
