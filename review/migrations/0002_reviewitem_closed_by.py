"""Why a review item is closed: a final review, or the erasure of its subject (issue 11); the
items an erasure left open before are closed now, naming it."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import F, OuterRef, Subquery


def closed_by_fill(apps, schema_editor):
    ReviewItem = apps.get_model("review", "ReviewItem")
    Erasure = apps.get_model("audit", "Erasure")
    ReviewItem.objects.filter(status="closed").update(closed_by="review")
    erased = ReviewItem.objects.exclude(status="closed").filter(
        decision__subject__erased_at__isnull=False,
        decision__received_at__lte=F("decision__subject__erased_at"),
    )
    latest = Erasure.objects.filter(subject=OuterRef("decision__subject")).order_by(
        "-erased_at", "-pk"
    )
    for item in erased.annotate(erasure_pk=Subquery(latest.values("pk")[:1])).select_related(
        "decision__subject"
    ):
        item.status = "closed"
        item.closed_by = "erasure"
        item.closed_at = item.decision.subject.erased_at
        item.erasure_id = item.erasure_pk
        item.claimed_by = None
        item.claimed_at = None
        item.proposed_output = None
        item.proposed_by = None
        item.save()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_decision_clear_ids_removed"),
        ("review", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="reviewitem",
            name="closed_by",
            field=models.CharField(
                blank=True,
                choices=[
                    ("review", "a final review"),
                    ("erasure", "erasure of the subject's personal data"),
                ],
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="reviewitem",
            name="erasure",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="review_items_closed",
                to="audit.erasure",
            ),
        ),
        migrations.RunPython(closed_by_fill, migrations.RunPython.noop, elidable=False),
    ]
