"""Subresource Integrity for the scripts the portal serves: hashes, the verifier's import map."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from pathlib import Path

from django.contrib.staticfiles import finders
from django.templatetags.static import static
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

VERIFIER_DIR = "verifier"
# Page scripts live under here: hashed like every verifier file, but not preloaded on every page.
PAGE_DIR = "verifier/page/"
VENDOR_DIR = "vendor"
# The bare specifiers the vendored pkijs imports, and the vendored file each one names.
BARE_IMPORTS = {
    "pkijs": "vendor/pkijs-3.4.3/build/index.es.js",
    "asn1js": "vendor/asn1js-3.1.0/build/index.es.js",
    "pvtsutils": "vendor/pvtsutils-1.3.6/build/index.es.js",
    "pvutils": "vendor/pvutils-1.2.0/build/utils.es.js",
    "bytestreamjs": "vendor/bytestreamjs-2.0.1/build/mjs/index.js",
    "@noble/hashes/sha1": "vendor/noble-hashes-1.8.0/esm/sha1.js",
    "@noble/hashes/sha2": "vendor/noble-hashes-1.8.0/esm/sha2.js",
    "@noble/hashes/crypto": "vendor/noble-hashes-1.8.0/esm/crypto.js",
}


def _file(path: str) -> Path:
    found = finders.find(path)
    if not found:
        raise FileNotFoundError(f"no static file {path}")
    return Path(found)


@functools.lru_cache(maxsize=256)
def _digest(file: Path, mtime_ns: int, size: int) -> str:
    return "sha384-" + base64.b64encode(hashlib.sha384(file.read_bytes()).digest()).decode()


def static_integrity(path: str) -> str:
    """The `integrity` value ("sha384-...") of a static file, by its path under static/."""
    file = _file(path)
    stat = file.stat()
    # Keyed by mtime and size, so an edited file gets its new hash without a restart.
    return _digest(file, stat.st_mtime_ns, stat.st_size)


def _scripts_under(folder: str) -> list[str]:
    root = _file(folder)
    return sorted(f"{folder}/{file.relative_to(root).as_posix()}" for file in root.rglob("*.js"))


def verifier_files() -> list[str]:
    """Every static path the browser verifier loads: its own modules, then the vendored ones."""
    return _scripts_under(VERIFIER_DIR) + _scripts_under(VENDOR_DIR)


def verifier_head() -> SafeString:
    """For a page's <head>, before any module script: the import map (bare specifiers of the
    vendored libraries, and an integrity hash for every module the verifier loads, which the
    browser checks for modules imported by other modules too) and preloads of its own modules."""
    files = verifier_files()
    # bytestreamjs's ES build imports its own modules without the ".js" a browser needs.
    extensionless = {
        static(path.removesuffix(".js")): static(path)
        for path in files
        if path.startswith(f"{VENDOR_DIR}/bytestreamjs-")
    }
    importmap = {
        "imports": {
            **{name: static(path) for name, path in BARE_IMPORTS.items()},
            **extensionless,
        },
        "integrity": {static(path): static_integrity(path) for path in files},
    }
    # "</" cannot occur in the JSON of static paths and base64, but escape it all the same.
    text = json.dumps(importmap, indent=1).replace("</", "<\\/")
    preloads = format_html_join(
        "\n",
        '<link rel="modulepreload" href="{}" integrity="{}">',
        (
            (static(path), static_integrity(path))
            for path in files
            if path.startswith(f"{VERIFIER_DIR}/") and not path.startswith(PAGE_DIR)
        ),
    )
    # JSON, which format_html would HTML-escape: "</" is escaped above instead.
    importmap_json = mark_safe(text)  # noqa: S308
    return format_html('<script type="importmap">{}</script>\n{}', importmap_json, preloads)


def module_script(path: str) -> SafeString:
    """A <script type="module"> for a static page script, with its integrity hash."""
    return format_html(
        '<script type="module" src="{}" integrity="{}"></script>',
        static(path),
        static_integrity(path),
    )
