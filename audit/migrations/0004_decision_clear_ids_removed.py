"""The clear client decision id and Idempotency-Key columns go; the lookups take their unique
constraints. Its own migration: on PostgreSQL the table is altered after 0003's updates commit."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("audit", "0003_decision_lookups")]

    operations = [
        migrations.RemoveConstraint(model_name="decision", name="decision_unique_client_id"),
        migrations.RemoveConstraint(model_name="decision", name="decision_unique_idempotency_key"),
        migrations.RemoveField(model_name="decision", name="client_decision_id"),
        migrations.RemoveField(model_name="decision", name="idempotency_key"),
        migrations.AlterField(
            model_name="decision",
            name="client_id_lookup",
            field=models.BinaryField(max_length=32),
        ),
        migrations.AddConstraint(
            model_name="decision",
            constraint=models.UniqueConstraint(
                fields=("system", "client_id_lookup"), name="decision_unique_client_id"
            ),
        ),
        migrations.AddConstraint(
            model_name="decision",
            constraint=models.UniqueConstraint(
                fields=("system", "idempotency_lookup"), name="decision_unique_idempotency_key"
            ),
        ),
    ]
