"""A receipt verified in the browser (Chromium, the portal's ES modules), against Python's."""

from __future__ import annotations

import json
import mimetypes
import os
import random
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.staticfiles import finders
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from bench import Figure, log_ensure, median, percentile, say
from portal import sri
from timestamping import selectors
from timestamping.models import Batch, Entry, LogKey

RECEIPTS = max(1, int(os.environ.get("VERIDICT_BENCH_BROWSER_RECEIPTS", "20")))
REPETITIONS = max(3, int(os.environ.get("VERIDICT_BENCH_BROWSER_REPS", "10")))
TARGET_MS = 50.0
CHROMIUM = Path(os.environ.get("VERIDICT_CHROMIUM", "/usr/bin/chromium"))

# Runs in the page: warm-up, then each receipt REPETITIONS times, each call timed with
# performance.now(); and the floor of the same receipts in raw WebCrypto (the SHA-256 hashes and
# Ed25519 verifications a verifier cannot avoid), timed the same way.
PAGE_BENCH = """
async ({receipts, keys, caPem, reps}) => {
  const { verifyReceipt } = await import("/static/verifier/receipt.js");
  const { noteSplit, parseVerifierKey } = await import("/static/verifier/note.js");
  const { fromBase64, fromHex, utf8 } = await import("/static/verifier/bytes.js");
  for (const receipt of receipts) {
    const report = await verifyReceipt(receipt, { keys, tsaCaPem: caPem });
    if (report.verdict !== "verified" || report.steps.some((s) => s.status !== "ok")) {
      throw new Error("a bench receipt does not verify: " + JSON.stringify(report.steps));
    }
  }
  const pinned = await Promise.all(keys.map((k) => parseVerifierKey(k)));
  const floorWork = receipts.map((r) => {
    const notes = [r.set, r.checkpoint, ...r.anchors.map((a) => a.checkpoint)].map((n) => {
      const { text, signatures } = noteSplit(n);
      const key = pinned.find((k) => k.keyIdHex === signatures[0].keyIdHex);
      return [key.cryptoKey, signatures[0].signature, utf8(text)];
    });
    const nodes = r.proof.inclusion.map((h) => {
      const node = new Uint8Array(65);
      node.set([1]);
      node.set(fromHex(h), 1);
      node.set(fromHex(h), 33);
      return node;
    });
    return { leaf: fromBase64(r.entry.canonical_b64), nodes, notes };
  });
  const verify = [];
  const floor = [];
  for (let rep = 0; rep < reps; rep++) {
    for (const [i, receipt] of receipts.entries()) {
      let start = performance.now();
      await verifyReceipt(receipt, { keys, tsaCaPem: caPem });
      verify.push(performance.now() - start);
      const work = floorWork[i];
      start = performance.now();
      await crypto.subtle.digest("SHA-256", work.leaf);
      for (const node of work.nodes) await crypto.subtle.digest("SHA-256", node);
      for (const [key, signature, text] of work.notes) {
        await crypto.subtle.verify({ name: "Ed25519" }, key, signature, text);
      }
      floor.push(performance.now() - start);
    }
  }
  return { verify, floor };
}
"""


@contextmanager
def _page_server() -> Iterator[str]:
    """A loopback server of one page holding the verifier's import map (as the portal renders it,
    with SRI) and of the static files."""
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>bench</title>'
        f"{sri.verifier_head()}</head><body></body></html>"
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 -- the name http.server calls
            path = self.path.split("?")[0]
            found = (
                finders.find(path.removeprefix("/static/")) if path.startswith("/static/") else None
            )
            if path == "/":
                body, media_type = page, "text/html"
            elif found:
                body = Path(found).read_bytes()
                media_type = mimetypes.guess_type(found)[0] or "application/octet-stream"
                media_type = "text/javascript" if found.endswith(".js") else media_type
            else:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", media_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def _receipts(size: int) -> list[dict[str, Any]]:
    rng = random.Random(1107)
    latest = selectors.batch_latest()
    assert latest is not None
    first_seq = Batch.objects.get(number=1).first_seq
    seqs = rng.sample(range(first_seq, latest.last_seq + 1), min(RECEIPTS, size))
    entries = Entry.objects.filter(seq__in=seqs)
    # Through JSON, as the page receives them.
    return [json.loads(json.dumps(selectors.receipt_get(entry=entry))) for entry in entries]


def _python_ms(receipts: list[dict[str, Any]], keys: list[str], ca_pem: str) -> list[float]:
    pinned = [VerifierKey.parse(text) for text in keys]
    timings = []
    for _ in range(REPETITIONS):
        for receipt in receipts:
            start = time.perf_counter()
            report = receipt_verify(receipt, keys=pinned, tsa_ca_pem=ca_pem.encode())
            timings.append((time.perf_counter() - start) * 1000)
            if not report.ok:
                raise AssertionError(f"a bench receipt does not verify: {report.steps}")
    return timings


def run() -> list[Figure]:
    from playwright.sync_api import sync_playwright

    if shutil.which(str(CHROMIUM)) is None:
        say(f"\n== browser_verify: skipped, no Chromium at {CHROMIUM} (Debian package chromium)")
        return []
    size = log_ensure()
    say(
        f"\n== browser_verify: verifyReceipt in Chromium of {RECEIPTS} receipts of the log, "
        f"TSA CA pinned, {REPETITIONS} repetitions each, timed in the page (performance.now)"
    )
    receipts = _receipts(size)
    keys = list(LogKey.objects.values_list("verifier_key", flat=True))
    ca_pem = Path(settings.TSA_CA_CERT_FILE).read_text()
    depth = median([len(receipt["proof"]["inclusion"]) for receipt in receipts])
    anchors = len(receipts[0]["anchors"])
    say(f"receipts: median inclusion proof {depth:g} hashes, {anchors} anchor(s)")
    # Playwright's sync API runs an event loop in this thread; the ORM reads are done above.
    with _page_server() as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(url)
            timed = page.evaluate(
                PAGE_BENCH,
                {"receipts": receipts, "keys": keys, "caPem": ca_pem, "reps": REPETITIONS},
            )
        finally:
            browser.close()
    python = _python_ms(receipts, keys, ca_pem)
    browser_median = median(timed["verify"])
    python_median = median(python)
    floor_median = median(timed["floor"])
    say(
        f"browser verifyReceipt: median {browser_median:.2f} ms, "
        f"p99 {percentile(timed['verify'], 0.99):.2f} ms over {len(timed['verify'])} calls"
    )
    say(f"python receipt_verify (ceiling, same receipts, same run): median {python_median:.2f} ms")
    say(
        f"raw WebCrypto floor (leaf and path SHA-256, the notes' Ed25519): "
        f"median {floor_median:.2f} ms"
    )
    return [
        Figure(
            "browser_verify: ms per receipt in Chromium (ceiling: Python verifier)",
            browser_median,
            "ms",
            python_median,
            python_median / browser_median,
            target=f"< {TARGET_MS:g} ms",
            passed=browser_median < TARGET_MS,
        ),
        Figure(
            "browser_verify floor: raw WebCrypto of the same receipts",
            floor_median,
            "ms",
            browser_median,
            floor_median / browser_median,
        ),
    ]
