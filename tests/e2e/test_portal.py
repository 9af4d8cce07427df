"""The portal in Chromium: a document hashed in the page, found and verified; an unknown one
reported; the explorer followed along the chain of batches."""

from __future__ import annotations

import hashlib

import pytest
from playwright.sync_api import expect

from audit.services.documents import document_register
from tests.audit.conftest import AISystemFactory
from timestamping.services import batch_seal, entry_append

pytestmark = pytest.mark.django_db(transaction=True)
TIMEOUT_MS = 30_000


@pytest.fixture
def registered(tmp_path):
    """A file registered by a public AI system, sealed and stamped by the built-in TSA."""
    path = tmp_path / "contract.pdf"
    path.write_bytes(b"%PDF-1.7 a loan contract\n" + bytes(range(256)) * 40)
    system = AISystemFactory(name="Loan scorer", slug="loan-scorer", is_public=True)
    document, _ = document_register(
        system=system, sha256=hashlib.sha256(path.read_bytes()).hexdigest()
    )
    batch = batch_seal()  # outside any transaction: the after-commit stamp runs right away
    assert batch is not None and batch.anchors.exists()
    return path, document, batch


def test_a_registered_document_is_found_and_verified_green(
    page, live_server, registered, screenshot
):
    path, document, batch = registered
    page.goto(live_server.url + "/")
    page.set_input_files("#document-file", str(path))

    verdict = page.locator(".verdict[data-verdict]:not([data-verdict='running'])")
    expect(verdict).to_have_attribute("data-verdict", "verified", timeout=TIMEOUT_MS)
    expect(page.locator("#digest")).to_have_value(document.sha256)
    result = page.locator("#document-result")
    expect(result).to_contain_text("Registered by Loan scorer")
    expect(result.locator(f"a[href='/log/batches/{batch.number}']")).to_be_visible()
    expect(result).to_contain_text("own TSA (not independent of us)")
    statuses = page.locator("ol.steps li").evaluate_all(
        "items => items.map(li => [li.dataset.step, li.dataset.status])"
    )
    assert [name for name, _ in statuses] == [
        "leaf",
        "set",
        "inclusion",
        "checkpoint_signature",
        "batch_header",
        # A document belongs to its system's log: its receipt proves that inclusion too.
        "stream_inclusion",
        "anchor[0]",
    ]
    assert {status for _, status in statuses} == {"ok"}
    assert screenshot("verified").exists()


def test_an_unknown_document_is_reported_not_found(page, live_server, tmp_path, screenshot):
    path = tmp_path / "unknown.txt"
    path.write_bytes(b"never registered anywhere")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(live_server.url + "/")
    page.set_input_files("#document-file", str(path))
    expect(page.locator("#document-result .not-found")).to_contain_text(
        "Not found", timeout=TIMEOUT_MS
    )
    expect(page.locator("#looked-up-digest")).to_have_text(
        hashlib.sha256(path.read_bytes()).hexdigest()
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    assert screenshot("not-found-phone").exists()


def test_a_pasted_digest_is_looked_up_too(page, live_server, registered):
    _, document, _ = registered
    page.goto(live_server.url + "/")
    page.fill("#digest", document.sha256.upper())
    page.keyboard.press("Enter")
    expect(page.locator(".verdict[data-verdict='verified']")).to_be_visible(timeout=TIMEOUT_MS)


def test_large_files_hash_in_slices_to_the_same_digest_as_webcrypto(page, live_server):
    """The streaming SHA-256 that large files go through agrees with WebCrypto, at block and
    padding boundaries and across slices."""
    page.goto(live_server.url + "/")
    mismatches = page.evaluate(
        """async () => {
          const { StreamingSha256, fileSha256 } = await import('/static/portal/document.js');
          const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
          const bad = [];
          for (const size of [0, 1, 55, 56, 63, 64, 65, 119, 120, 1000, 100003]) {
            const data = new Uint8Array(size).map((_, i) => (i * 31 + size) & 255);
            const want = hex(new Uint8Array(await crypto.subtle.digest('SHA-256', data)));
            const whole = hex(new StreamingSha256().update(data).digest());
            const pieces = new StreamingSha256();
            for (let i = 0; i < size; i += 37) pieces.update(data.subarray(i, i + 37));
            const sliced = hex(await fileSha256(new Blob([data]), { wholeLimit: -1 }));
            if (whole !== want || hex(pieces.digest()) !== want || sliced !== want) bad.push(size);
          }
          return bad;
        }"""
    )
    assert mismatches == []


def test_the_explorer_follows_a_batchs_chain_links(page, live_server, screenshot):
    for number in range(3):
        entry_append(kind="test", envelope={"n": number})
        batch_seal()
    page.goto(live_server.url + "/log/")
    expect(page.locator("svg.tree-chart")).to_be_visible()
    assert screenshot("log").exists()
    page.get_by_role("link", name="3", exact=True).first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Batch 3")
    assert screenshot("batch-3").exists()
    for number in (2, 1):
        page.get_by_role("link", name=f"← Batch {number}").click()
        expect(page.get_by_role("heading", level=1)).to_have_text(f"Batch {number}")
    expect(page.locator("nav.chain")).to_contain_text("First batch")
    page.get_by_role("link", name="Batch 2 →").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Batch 2")
    expect(page.locator("body")).to_contain_text("checks out")


def test_an_entry_page_draws_its_path_and_links_the_receipt_check(page, live_server, screenshot):
    entries = [entry_append(kind="test", envelope={"n": n})[0] for n in range(11)]
    batch_seal()
    url = f"{live_server.url}/log/entries/{entries[5].uuid}"
    page.goto(url)
    expect(page.locator("svg.inclusion-path g.sibling")).to_have_count(4)
    expect(page.locator("body")).to_contain_text("The path leads to the checkpoint")
    assert screenshot("entry").exists()
    page.get_by_role("link", name="Verify the receipt in your browser").click()
    assert page.url.endswith(f"/verify/receipt?entry={entries[5].uuid}")

    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    page.goto(url)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390, "the page scrolls sideways on a phone"
    assert screenshot("entry-phone").exists()


def test_the_keys_pages_read_on_a_phone(page, live_server, screenshot):
    entry_append(kind="test", envelope={"n": 1})
    batch_seal()
    page.set_viewport_size({"width": 390, "height": 844})
    for path, label in (("/keys/", "keys"), ("/keys/check-yourself", "check-yourself")):
        page.goto(live_server.url + path)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390, path
        assert screenshot(label).exists()
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
