"""The portal's pages: verify a document, the log explorer, keys and trust, entry paths."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.module_loading import import_string
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_safe

from portal import selectors, sri, svg
from portal.verifier_archive import verifier_archive
from timestamping import keys, tsa
from timestamping import selectors as log_selectors
from veridict.ratelimit import rate_limited

HEX_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
STATIC_ROOT_DIR = Path(settings.BASE_DIR) / "static"
# Files up to this size are hashed by WebCrypto in one call (it has no incremental digest);
# larger ones stream through the page's own SHA-256 (static/portal/document.js) a slice at a
# time, so that a phone never holds a whole large file in memory.
WHOLE_FILE_LIMIT = 256 * 1024 * 1024


def _page_scripts() -> dict[str, str]:
    return {
        "verifier_head": sri.verifier_head(),
        "document_script": sri.module_script("portal/document.js"),
    }


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    latest = log_selectors.batch_latest()
    context = {
        "latest": latest,
        "pending": log_selectors.entries_pending_count(after=latest),
        "whole_file_limit": WHOLE_FILE_LIMIT,
        **_page_scripts(),
    }
    return render(request, "portal/home.html", context)


@require_safe
def document_search(request: HttpRequest) -> HttpResponse:
    """The digest form without JavaScript: on to the digest's own page."""
    digest = request.GET.get("sha256", "").strip()
    if not HEX_SHA256.match(digest):
        context = {
            "error": "A SHA-256 digest is 64 hexadecimal digits (0-9, a-f).",
            "sha256": digest,
        }
        return render(request, "portal/document.html", context, status=400)
    return redirect("portal-document", sha256=digest.lower())


@require_safe
@rate_limited("lookup")
def document(request: HttpRequest, sha256: str) -> HttpResponse:
    if not HEX_SHA256.match(sha256):
        raise Http404("not a SHA-256 digest")
    if sha256 != sha256.lower():
        return redirect("portal-document", sha256=sha256.lower())
    registrations = selectors.document_registrations(sha256=sha256)
    context = {"sha256": sha256, "registrations": registrations}
    return render(request, "portal/document.html", context, status=200 if registrations else 404)


@require_safe
def log_index(request: HttpRequest) -> HttpResponse:
    try:
        page_number = int(request.GET.get("page", "1"))
    except ValueError:
        page_number = 1
    page = selectors.batch_page(page=page_number)
    context = {
        "page": page,
        "latest": page.latest,
        "pending": log_selectors.entries_pending_count(after=page.latest),
        "chart": mark_safe(svg.tree_size_chart_svg(selectors.tree_size_series())),  # noqa: S308 - built by us, every value escaped
        "sources": selectors.anchor_sources(),
    }
    return render(request, "portal/log.html", context)


@require_safe
def batch(request: HttpRequest, number: int) -> HttpResponse:
    try:
        detail = selectors.batch_detail(number=number)
    except log_selectors.NotInLog as exc:
        raise Http404(str(exc)) from exc
    return render(request, "portal/batch.html", detail)


@require_safe
def batch_checkpoint(request: HttpRequest, number: str, part: str) -> HttpResponse:
    """The batch's checkpoint as a signed note, or its body alone (the `-data` of openssl ts)."""
    try:
        note = log_selectors.batch_get(number=int(number)).checkpoint
    except log_selectors.NotInLog as exc:
        raise Http404(str(exc)) from exc
    text = note if part == "checkpoint" else selectors.checkpoint_body(note)
    response = HttpResponse(text.encode(), content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="batch-{number}-{part}.txt"'
    return response


@require_safe
def anchor_tsr(request: HttpRequest, number: int, backend: str) -> HttpResponse:
    try:
        anchor = selectors.anchor_of_batch(number=number, backend=backend)
    except log_selectors.NotInLog as exc:
        raise Http404(str(exc)) from exc
    if anchor.type != "rfc3161":
        raise Http404("this anchor is not an RFC 3161 time-stamp")
    response = HttpResponse(bytes(anchor.tsr), content_type="application/timestamp-reply")
    response["Content-Disposition"] = f'attachment; filename="batch-{number}-{backend}.tsr"'
    return response


def _receipt_allowed(request: HttpRequest, entry: object) -> bool:
    """The receipt API's access rule; portal readers carry no API key, staff have a session."""
    reader = SimpleNamespace(auth=None, user=request.user)
    return bool(import_string(settings.RECEIPT_ACCESS)(entry, reader))


@require_safe
@rate_limited("entry")
def entry(request: HttpRequest, entry_id: str) -> HttpResponse:
    try:
        found = log_selectors.entry_get(entry_id=entry_id)
    except log_selectors.NotInLog as exc:
        raise Http404(str(exc)) from exc
    # Not 403: like the receipt API, a private system's entries are not shown to exist.
    if not _receipt_allowed(request, found):
        raise Http404(f"there is no entry {entry_id}")
    context = selectors.entry_page(entry=found)
    if context["path"] is not None:
        context["path_svg"] = mark_safe(svg.inclusion_path_svg(context["path"]))  # noqa: S308 - built by us, every value escaped
    return render(request, "portal/entry.html", context)


@require_safe
def keys_page(request: HttpRequest) -> HttpResponse:
    current = str(keys.verifier_key())
    context = {
        "origin": keys.verifier_key().name,
        "log_keys": selectors.log_keys(),
        "current": current,
        "tsa_ca_pem": tsa.tsa_ca_certificate_pem(),
        "sources": selectors.anchor_sources(),
    }
    return render(request, "portal/keys.html", context)


def _served_scripts() -> list[dict[str, str]]:
    """Every script under static/ the portal serves, with its Subresource Integrity hash."""
    paths = sorted(
        path.relative_to(STATIC_ROOT_DIR).as_posix()
        for path in STATIC_ROOT_DIR.rglob("*.js")
        if path.is_file()
    )
    return [{"path": path, "integrity": sri.static_integrity(path)} for path in paths]


@require_safe
def check_yourself(request: HttpRequest) -> HttpResponse:
    archive = verifier_archive()
    latest = log_selectors.batch_latest()
    context = {
        "keys": [key.verifier_key for key in selectors.log_keys()],
        "archive": archive,
        "scripts": _served_scripts(),
        "latest": latest,
        "origin": request.build_absolute_uri("/").rstrip("/"),
    }
    return render(request, "portal/check_yourself.html", context)


@require_safe
def verifier_download(request: HttpRequest, filename: str) -> HttpResponse:
    archive = verifier_archive()
    if filename != archive.filename:
        return redirect(reverse("portal-verifier-download", args=[archive.filename]))
    response = HttpResponse(archive.content, content_type="application/gzip")
    response["Content-Disposition"] = f'attachment; filename="{archive.filename}"'
    return response
