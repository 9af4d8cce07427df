"""One verdict everywhere: the browser verifier and veridict-verify agree on every receipt."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from veridict_verify.formats import parse_time
from veridict_verify.note import VerifierKey
from veridict_verify.receipt import receipt_verify

from portal import sri
from tests.receipt_corpus import Case, Corpus, corpus_build
from timestamping.services import batch_seal

pytestmark = pytest.mark.django_db(transaction=True)

# Imports the verifier on the page (through its import map, with SRI) and verifies every case.
VERIFY_ALL = """
async ({cases, key}) => {
  const { receiptParse, verifyReceipt } = await import("/static/verifier/receipt.js");
  const out = [];
  for (const c of cases) {
    const receipt = receiptParse(c.text);
    const report = await verifyReceipt(receipt, { keys: [key], tsaCaPem: c.tsaCa });
    const failed = report.steps.find((step) => step.status === "failed");
    out.push({
      name: c.name,
      verdict: report.verdict,
      exitCode: report.exitCode,
      failing: failed ? failed.name : null,
      steps: report.steps.map((step) => [step.name, step.status]),
    });
  }
  return out;
}
"""


@pytest.fixture
def corpus(tmp_path) -> Corpus:
    return corpus_build(seal=batch_seal, folder=tmp_path / "other-tsa")


def cli_report(corpus: Corpus, case: Case) -> dict:
    tsa_ca = corpus.tsa_ca_for(case)
    return receipt_verify(
        json.loads(case.text),
        keys=[VerifierKey.parse(corpus.verifier_key)],
        tsa_ca_pem=tsa_ca.encode() if tsa_ca else None,
    ).as_dict()


def test_every_corpus_receipt_gets_the_same_verdict_and_failing_step_in_the_browser(
    page, live_server, corpus
) -> None:
    page.goto(live_server.url + "/verify/receipt")
    cases = [
        {"name": case.name, "text": case.text, "tsaCa": corpus.tsa_ca_for(case)}
        for case in corpus.cases
    ]
    browser = {
        row["name"]: row
        for row in page.evaluate(VERIFY_ALL, {"cases": cases, "key": corpus.verifier_key})
    }
    exit_codes = {"verified": 0, "failed": 1, "pending": 3}
    disagreements = {}
    for case in corpus.cases:
        python = cli_report(corpus, case)
        python_steps = [[step["name"], step["status"]] for step in python["steps"]]
        failed = [name for name, status in python_steps if status == "failed"]
        seen = browser[case.name]
        expected = (case.verdict, case.failing_step)
        if (
            (python["verdict"], failed[0] if failed else None) != expected
            or (seen["verdict"], seen["failing"]) != expected
            or seen["steps"] != python_steps
            or seen["exitCode"] != exit_codes[case.verdict]
        ):
            disagreements[case.name] = {"python": python_steps, "browser": seen["steps"]}
    assert not disagreements, json.dumps(disagreements, indent=1)
    assert len(browser) == len(corpus.cases) > 80


def verify_in_page(page, receipt: dict) -> None:
    page.fill("#receipt-text", json.dumps(receipt))
    page.click("#verify-button")
    page.wait_for_selector("#result [data-verdict]")


def test_a_valid_receipt_is_verified_step_by_step_on_the_page(
    page, live_server, corpus, screenshot
) -> None:
    page.goto(live_server.url + "/verify/receipt")
    page.wait_for_function("document.getElementById('verifier-keys').value.includes('+')")
    assert "BEGIN CERTIFICATE" in page.input_value("#tsa-ca")
    verify_in_page(page, corpus.by_name["valid: batch 2 entry with two anchors"].receipt)
    steps = page.locator("#result ol.steps li")
    assert steps.evaluate_all("items => items.map(li => [li.dataset.step, li.dataset.status])") == [
        ["leaf", "ok"],
        ["set", "ok"],
        ["inclusion", "ok"],
        ["checkpoint_signature", "ok"],
        ["batch_header", "ok"],
        ["anchor[0]", "ok"],
        ["anchor[1]", "ok"],
    ]
    assert page.get_attribute("#result", "aria-live") == "polite"
    assert "Verified" in page.inner_text("#result .verdict")
    assert screenshot("verified").exists()


def test_a_tampered_receipt_turns_red_at_the_failing_step_with_its_reason(
    page, live_server, corpus, screenshot
) -> None:
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(live_server.url + "/verify/receipt")
    page.wait_for_function("document.getElementById('verifier-keys').value.includes('+')")
    verify_in_page(page, corpus.by_name["proof.inclusion[1] changed"].receipt)
    last = page.locator("#result ol.steps li").last
    assert (last.get_attribute("data-step"), last.get_attribute("data-status")) == (
        "inclusion",
        "failed",
    )
    assert "does not lead to the root" in last.inner_text()
    assert "failed at inclusion" in page.inner_text("#result .verdict")
    # Readable on a phone: nothing wider than the screen.
    too_wide = page.evaluate(
        """() => [...document.querySelectorAll("body *")]
          .filter((node) => node.getBoundingClientRect().right > 375)
          .map((node) => `${node.tagName}#${node.id}.${node.className}`)"""
    )
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, too_wide
    assert screenshot("tampered-phone").exists()


def test_the_entry_parameter_fetches_and_verifies_that_entrys_receipt(
    page, live_server, corpus
) -> None:
    receipt = corpus.by_name["valid: first batch entry"].receipt
    page.goto(f"{live_server.url}/verify/receipt?entry={receipt['entry']['id']}")
    page.wait_for_selector("#result [data-verdict]")
    assert page.get_attribute("#result [data-verdict]", "data-verdict") == "verified"
    assert page.locator("#result ol.steps li").count() == 6


def test_every_verifier_module_is_loaded_with_a_checked_integrity_hash(page, live_server) -> None:
    page.goto(live_server.url + "/verify/receipt")
    importmap = json.loads(page.inner_text("script[type=importmap]"))
    assert set(importmap["integrity"]) == {f"/static/{path}" for path in sri.verifier_files()}
    loaded = page.evaluate(
        """async () => {
          await import("/static/verifier/receipt.js");
          return performance.getEntriesByType("resource").map((e) => new URL(e.name).pathname)
            .filter((path) => path.endsWith(".js"));
        }"""
    )
    assert set(loaded) <= set(importmap["integrity"])
    assert "/static/vendor/pkijs-3.4.3/build/index.es.js" in loaded
    # A module whose bytes do not match its hash is refused by the browser.
    refused = page.evaluate(
        """async () => {
          const map = document.createElement("script");
          map.type = "importmap";
          const wrong = {"/static/verifier/merkle.js?x": "sha384-AAAA"};
          map.textContent = JSON.stringify({integrity: wrong});
          document.head.append(map);
          try { await import("/static/verifier/merkle.js?x"); return false; } catch { return true; }
        }"""
    )
    assert refused


VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "rfc9162"

CHECK_VECTORS = """
async (vectors) => {
  const merkle = await import("/static/verifier/merkle.js");
  const { fromHex } = await import("/static/verifier/bytes.js");
  const wrong = [];
  for (const v of vectors) {
    const [a, b] = v.hashes.map((hex) => fromHex(hex));
    const proof = v.proof.map((hex) => fromHex(hex));
    let refused = false;
    try {
      if (v.kind === "inclusion") await merkle.verifyInclusion(v.first, v.second, b, proof, a);
      else await merkle.verifyConsistency(v.first, v.second, a, b, proof);
    } catch (error) {
      if (!(error instanceof merkle.ProofError)) throw error;
      refused = true;
    }
    if (refused !== v.wantErr) wrong.push(v.name);
  }
  return wrong;
}
"""


def test_the_browsers_merkle_proofs_accept_and_refuse_every_rfc9162_vector(
    page, live_server
) -> None:
    def hex_of(text: str | None) -> str:
        return base64.b64decode(text).hex() if text else ""

    vectors = []
    for path in sorted(VECTORS.glob("*/**/*.json")):
        case = json.loads(path.read_text())
        kind = path.relative_to(VECTORS).parts[0]
        if kind == "inclusion":
            first, second = case["leafIdx"], case["treeSize"]
            hashes = [hex_of(case["root"]), hex_of(case["leafHash"])]
        else:
            first, second = case["size1"], case["size2"]
            hashes = [hex_of(case["root1"]), hex_of(case["root2"])]
        vectors.append(
            {
                "name": path.relative_to(VECTORS).as_posix(),
                "kind": kind,
                "first": first,
                "second": second,
                "hashes": hashes,
                "proof": [hex_of(step) for step in case["proof"] or []],
                "wantErr": case["wantErr"],
            }
        )
    assert len(vectors) == 196
    page.goto(live_server.url + "/verify/receipt")
    assert page.evaluate(CHECK_VECTORS, vectors) == []


class ChainStandIn:
    """A JSON-RPC node on loopback that knows one transaction: the corpus's ethereum claim, made
    true. It answers the browser too (CORS), as a node a user runs for this page would."""

    def __init__(self, claim: dict, body: bytes) -> None:
        block_time = parse_time(claim["block_time"])
        transaction = {
            "hash": claim["tx_hash"],
            "input": "0x" + hashlib.sha256(body).hexdigest(),
            "blockHash": claim["block_hash"],
            "blockNumber": hex(claim["block_number"]),
            "chainId": hex(claim["chain_id"]),
        }
        self.results = {
            "eth_chainId": hex(claim["chain_id"]),
            "eth_getTransactionByHash": transaction,
            "eth_getBlockByNumber": {
                "hash": claim["block_hash"],
                "transactions": [claim["tx_hash"]],
                "timestamp": hex(int(block_time.timestamp())),
            },
            "eth_blockNumber": hex(claim["block_number"] + 4),
        }
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _headers(self, length: int) -> None:
                self.send_header("Access-Control-Allow-Origin", "*")
                self.send_header("Access-Control-Allow-Headers", "Content-Type, Accept")
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(length))
                self.end_headers()

            def do_OPTIONS(self) -> None:  # noqa: N802 -- the name http.server calls
                self.send_response(204)
                self._headers(0)

            def do_POST(self) -> None:  # noqa: N802
                call = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = {"jsonrpc": "2.0", "id": call["id"]}
                answer["result"] = stand_in.results[call["method"]]
                body = json.dumps(answer).encode()
                self.send_response(200)
                self._headers(len(body))
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


VERIFY_WITH_NODE = """
async ({receipts, key, caPem, rpcUrl}) => {
  const { verifyReceipt } = await import("/static/verifier/receipt.js");
  const out = [];
  for (const receipt of receipts) {
    const options = { keys: [key], tsaCaPem: caPem, rpcUrls: [rpcUrl] };
    const report = await verifyReceipt(receipt, options);
    out.push(report.steps.map((step) => [step.name, step.status]));
  }
  return out;
}
"""


def test_an_ethereum_anchor_is_checked_against_the_users_node_alike_in_both_verifiers(
    page, live_server, corpus
) -> None:
    claimed = corpus.by_name["valid: an unchecked ethereum claim (skipped)"].receipt
    claim = claimed["anchors"][2]
    node = ChainStandIn(
        claim, claim["checkpoint"][: claim["checkpoint"].rfind("\n\n") + 1].encode()
    )
    try:
        other_block = copy.deepcopy(claimed)
        other_block["anchors"][2]["block_hash"] = "0x" + "3d" * 32
        later = copy.deepcopy(claimed)
        later["anchors"][2]["block_time"] = "2026-11-26T12:00:01.000000Z"
        receipts = [claimed, other_block, later]
        python = [
            [
                [step.name, step.status]
                for step in receipt_verify(
                    receipt,
                    keys=[VerifierKey.parse(corpus.verifier_key)],
                    tsa_ca_pem=corpus.tsa_ca_pem.encode(),
                    rpc_urls=[node.url],
                ).steps
            ]
            for receipt in receipts
        ]
        page.goto(live_server.url + "/verify/receipt")
        browser = page.evaluate(
            VERIFY_WITH_NODE,
            {
                "receipts": receipts,
                "key": corpus.verifier_key,
                "caPem": corpus.tsa_ca_pem,
                "rpcUrl": node.url,
            },
        )
    finally:
        node.server.shutdown()
        node.server.server_close()
    assert browser == python
    assert [steps[-1] for steps in browser] == [
        ["anchor[2]", "ok"],
        ["anchor[2]", "failed"],
        ["anchor[2]", "failed"],
    ]
