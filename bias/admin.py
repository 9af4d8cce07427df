"""Admin of the bias app: which outcomes a system counts as favourable."""

from __future__ import annotations

from django.contrib import admin

from bias.models import OutcomeMapping


@admin.register(OutcomeMapping)
class OutcomeMappingAdmin(admin.ModelAdmin):
    list_display = ("system", "favourable_labels", "favourable_actual_labels")
    raw_id_fields = ("system",)
