"""The receipt-verify page: the browser verifier runs a receipt's steps against pinned keys."""

from __future__ import annotations

import uuid

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from portal import sri

PAGE_SCRIPT = "verifier/page/verify_receipt.js"
PAGE_CSS = "verifier/verify.css"


@require_safe
def verify_receipt(request: HttpRequest) -> HttpResponse:
    """?entry=<uuid> makes the page fetch and verify that entry's receipt."""
    entry = request.GET.get("entry", "").strip()
    try:
        entry_id = str(uuid.UUID(entry)) if entry else ""
        entry_error = ""
    except ValueError:
        entry_id, entry_error = "", f"{entry[:80]!r} is not an entry id (a UUID)."
    context = {
        "entry_id": entry_id,
        "entry_error": entry_error,
        "verifier_head": sri.verifier_head(),
        "page_script": sri.module_script(PAGE_SCRIPT),
        "css_integrity": sri.static_integrity(PAGE_CSS),
    }
    return render(request, "portal/verify_receipt.html", context)
