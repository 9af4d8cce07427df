"""Decisions stored under keyed hashes of their client id and Idempotency-Key (issue 11): the
clear values leave the row. Erasures keep the opening of their commitment to the decisions."""

from django.db import migrations, models

from audit import vault


def lookups_fill(apps, schema_editor):
    """Each decision's lookups from its clear columns; a decision already erased gets random
    ones (and a random request digest), as subject_erase now leaves them."""
    Decision = apps.get_model("audit", "Decision")
    rows = Decision.objects.select_related("subject").order_by("pk")
    changed = []
    for decision in rows.iterator(chunk_size=1000):
        erased_at = decision.subject.erased_at
        if erased_at is not None and decision.received_at <= erased_at:
            decision.client_id_lookup = vault.lookup_unlinked()
            decision.idempotency_lookup = None
            decision.request_digest = vault.lookup_unlinked()
        else:
            decision.client_id_lookup = vault.client_id_lookup(
                system_id=decision.system_id, client_decision_id=decision.client_decision_id
            )
            decision.idempotency_lookup = (
                None
                if decision.idempotency_key is None
                else vault.idempotency_lookup(
                    system_id=decision.system_id, key=decision.idempotency_key
                )
            )
        changed.append(decision)
        if len(changed) >= 1000:
            Decision.objects.bulk_update(
                changed, ["client_id_lookup", "idempotency_lookup", "request_digest"]
            )
            changed = []
    Decision.objects.bulk_update(
        changed, ["client_id_lookup", "idempotency_lookup", "request_digest"]
    )


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_erasure")]

    operations = [
        migrations.AddField(
            model_name="decision",
            name="client_id_lookup",
            field=models.BinaryField(max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="decision",
            name="idempotency_lookup",
            field=models.BinaryField(blank=True, max_length=32, null=True),
        ),
        migrations.AddField(
            model_name="erasure",
            name="decision_ids",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="erasure",
            name="decisions_salt",
            field=models.BinaryField(blank=True, max_length=32, null=True),
        ),
        migrations.AlterField(
            model_name="erasure",
            name="decisions",
            field=models.PositiveIntegerField(
                default=0, help_text="How many decisions the entry commits to."
            ),
        ),
        # Not reversible: the clear values are not kept anywhere they could come back from.
        migrations.RunPython(lookups_fill, elidable=False),
    ]
