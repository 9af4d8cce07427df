"""The admin's audit trail in the admin, read-only; every delete action recorded in it."""

from __future__ import annotations

import json

from django.contrib import admin
from django.contrib.admin.actions import delete_selected as django_delete_selected
from django.contrib.admin.models import LogEntry
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy

from staff.models import AdminEvent
from staff.services import log_entries_copy
from timestamping.admin import ReadOnlyAdminMixin


@admin.action(
    permissions=["delete"],
    description=gettext_lazy("Delete selected %(verbose_name_plural)s"),
)
def delete_selected(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    """Django's own action, whose LogEntries for several objects skip post_save (bulk_create):
    they are copied to AdminEvent here."""
    last_id = LogEntry.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    response = django_delete_selected(modeladmin, request, queryset)
    log_entries_copy(after_id=last_id, user_id=request.user.pk)
    return response


# Replaces the site-wide action of the same name for every ModelAdmin.
admin.site.add_action(delete_selected, "delete_selected")


@admin.register(AdminEvent)
class AdminEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", "kind", "username", "ip_address", "object_repr", "path")
    list_filter = ("kind", ("content_type", admin.RelatedOnlyFieldListFilter))
    search_fields = ("username", "object_repr", "=object_id")
    date_hierarchy = "created_at"
    list_select_related = ("content_type",)
    fields = readonly_fields = (
        "created_at",
        "kind",
        "user",
        "username",
        "ip_address",
        "path",
        "content_type",
        "object_id",
        "object_repr",
        "detail_text",
        "log_entry_id",
    )

    @admin.display(description="detail")
    def detail_text(self, event: AdminEvent) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.detail, indent=2, sort_keys=True))
