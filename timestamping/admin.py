"""The log in the admin: to look at, never to change (append-only, DESIGN.md)."""

from __future__ import annotations

import base64

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from timestamping.models import Anchor, Batch, Entry, LogKey, Tile
from veridict.admin_links import PermittedLinksAdmin


def _hex(value: bytes | memoryview | None) -> str:
    return bytes(value).hex() if value is not None else ""


class ReadOnlyAdminMixin:
    """No add, change or delete in the admin for anyone, superusers included, whatever their
    permissions: for rows that only services write (ledger rows, rows recorded with an entry,
    audit trails). Viewing still needs the model's view permission."""

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class LedgerAdmin(ReadOnlyAdminMixin, PermittedLinksAdmin):
    """Ledger rows are written by services only, and a changed row would break every proof
    that covers it."""

    show_full_result_count = False  # counting a large log on every page costs more than it tells


@admin.register(Entry)
class EntryAdmin(LedgerAdmin):
    list_display = ("seq", "uuid", "kind", "received_at")
    # No filter by kind: listing its values scans the whole log on every page.
    search_fields = ("=uuid",)
    fields = readonly_fields = (
        "seq",
        "uuid",
        "kind",
        "received_at",
        "leaf_hash_hex",
        "canonical_text",
        "set_note_text",
        "idempotency_key",
        "receipt",
    )

    @admin.display(description="leaf hash")
    def leaf_hash_hex(self, entry: Entry) -> str:
        return _hex(entry.leaf_hash)

    @admin.display(description="canonical bytes (RFC 8785)")
    def canonical_text(self, entry: Entry) -> str:
        return format_html("<pre>{}</pre>", bytes(entry.canonical).decode())

    @admin.display(description="signed entry timestamp")
    def set_note_text(self, entry: Entry) -> str:
        return format_html("<pre>{}</pre>", entry.set_note)

    @admin.display(description="receipt")
    def receipt(self, entry: Entry) -> str:
        url = reverse("entry-receipt", kwargs={"entry_id": entry.uuid})
        return format_html('<a href="{}">{}</a>', url, url)


@admin.register(Batch)
class BatchAdmin(LedgerAdmin):
    list_display = ("number", "tree_size", "first_seq", "last_seq", "sealed_at")
    search_fields = ("=number",)
    fields = readonly_fields = (
        "number",
        "sealed_at",
        "prev_tree_size",
        "tree_size",
        "first_seq",
        "last_seq",
        "skipped_ranges",
        "root_hex",
        "prev_header_hash_hex",
        "header_hash_hex",
        "header_text",
        "checkpoint_text",
    )

    @admin.display(description="root")
    def root_hex(self, batch: Batch) -> str:
        return _hex(batch.root)

    @admin.display(description="previous header hash")
    def prev_header_hash_hex(self, batch: Batch) -> str:
        return _hex(batch.prev_header_hash)

    @admin.display(description="header hash")
    def header_hash_hex(self, batch: Batch) -> str:
        return _hex(batch.header_hash)

    @admin.display(description="header (RFC 8785)")
    def header_text(self, batch: Batch) -> str:
        return format_html("<pre>{}</pre>", bytes(batch.header).decode())

    @admin.display(description="checkpoint")
    def checkpoint_text(self, batch: Batch) -> str:
        return format_html("<pre>{}</pre>", batch.checkpoint)


@admin.register(Tile)
class TileAdmin(LedgerAdmin):
    list_display = ("level", "index", "width")
    list_filter = ("level",)
    fields = readonly_fields = ("level", "index", "width", "hashes_hex")

    @admin.display(description="hashes")
    def hashes_hex(self, tile: Tile) -> str:
        raw = bytes(tile.hashes)
        lines = "\n".join(raw[at : at + 32].hex() for at in range(0, len(raw), 32))
        return format_html("<pre>{}</pre>", lines)


@admin.register(LogKey)
class LogKeyAdmin(LedgerAdmin):
    list_display = ("key_id", "verifier_key", "first_used_at")
    fields = readonly_fields = ("key_id", "verifier_key", "first_used_at")


@admin.register(Anchor)
class AnchorAdmin(LedgerAdmin):
    list_display = ("batch", "type", "tsa", "anchored_at")
    list_filter = ("type", "tsa")
    list_select_related = ("batch",)
    fields = readonly_fields = ("batch", "type", "tsa", "anchored_at", "tsr_size", "tsr_b64")

    @admin.display(description="TimeStampResp size (bytes)")
    def tsr_size(self, anchor: Anchor) -> int:
        return len(bytes(anchor.tsr))

    @admin.display(description="TimeStampResp (DER, base64)")
    def tsr_b64(self, anchor: Anchor) -> str:
        return format_html(
            '<pre style="white-space: pre-wrap; word-break: break-all">{}</pre>',
            base64.b64encode(bytes(anchor.tsr)).decode(),
        )
