// The receipt-verify page: reads a receipt (pasted, picked or ?entry=), the pinned keys, runs the
// browser verifier and shows each step with its status and reason.

import { VerifierInputError, pinnedKeysFetch, receiptParse, verifyReceipt } from "../receipt.js";

const form = document.getElementById("verify-form");
const receiptText = document.getElementById("receipt-text");
const receiptFile = document.getElementById("receipt-file");
const keysText = document.getElementById("verifier-keys");
const caText = document.getElementById("tsa-ca");
const rpcUrl = document.getElementById("rpc-url");
const keysStatus = document.getElementById("keys-status");
const result = document.getElementById("result");

const VERDICTS = {
  verified: "Verified: every step holds.",
  failed: "Not verified: a step failed.",
  pending:
    "Not sealed yet: the entry is promised (SET) but not in a checkpoint; fetch it again later.",
};

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function show(...nodes) {
  result.replaceChildren(el("h2", { class: "visually-hidden" }, "Result"), ...nodes);
}

function showError(message) {
  show(el("p", { class: "verdict status failed", role: "alert" }, message));
}

async function loadKeys() {
  keysStatus.textContent = "Loading the keys this server publishes…";
  try {
    const pinned = await pinnedKeysFetch();
    keysText.value = pinned.keys.join("\n");
    caText.value = pinned.tsaCaPem.trim();
    keysStatus.textContent = `Loaded ${pinned.keys.length} key(s) of ${pinned.origin} and the TSA CA from this server.`;
  } catch (error) {
    keysStatus.textContent = `Could not load the keys: ${error.message}`;
  }
}

function report(outcome) {
  const failed = outcome.steps.find((step) => step.status === "failed");
  const heading = failed
    ? `${VERDICTS.failed} It failed at ${failed.name}.`
    : VERDICTS[outcome.verdict];
  const steps = el("ol", { class: "steps", "aria-label": "Verification steps" });
  for (const step of outcome.steps) {
    steps.append(
      el(
        "li",
        { class: step.status, "data-step": step.name, "data-status": step.status },
        el("span", { class: "step-name" }, step.name),
        " ",
        el("span", { class: `status ${step.status}` }, step.status.toUpperCase()),
        el("span", { class: "step-detail" }, step.detail),
      ),
    );
  }
  const builtin = outcome.steps.some((step) => step.detail.startsWith("time-stamp by builtin"));
  const caveat = builtin
    ? el(
        "p",
        { class: "hint" },
        "A time-stamp by the built-in TSA is evidence from the log's own operator; one by a " +
          "remote TSA or a chain is independent (see the keys page).",
      )
    : "";
  show(
    el(
      "p",
      {
        class: `verdict status ${failed ? "failed" : outcome.verdict === "verified" ? "ok" : "pending"}`,
        "data-verdict": outcome.verdict,
      },
      heading,
    ),
    steps,
    caveat,
  );
}

async function verify() {
  let receipt;
  try {
    receipt = receiptParse(receiptText.value);
  } catch (error) {
    showError(`The receipt is not JSON: ${error.message}`);
    return;
  }
  const keys = keysText.value
    .split("\n")
    .map((line) => line.trim())
    .filter(Boolean);
  show(el("p", { class: "hint" }, "Verifying…"));
  try {
    const outcome = await verifyReceipt(receipt, {
      keys,
      tsaCaPem: caText.value.trim() || null,
      rpcUrls: rpcUrl.value.trim() ? [rpcUrl.value.trim()] : [],
    });
    report(outcome);
  } catch (error) {
    if (error instanceof VerifierInputError)
      showError(`A pinned key is not usable: ${error.message}`);
    else showError(`The verifier stopped: ${error.message}`);
  }
  result.focus();
}

receiptFile.addEventListener("change", async () => {
  const [file] = receiptFile.files;
  if (!file) return;
  receiptText.value = await file.text();
});

document.getElementById("load-keys").addEventListener("click", loadKeys);

form.addEventListener("submit", (event) => {
  event.preventDefault();
  verify();
});

async function start() {
  if (!keysText.value.trim()) await loadKeys();
  const entry = form.dataset.entry;
  if (entry) {
    const response = await fetch(`/api/v1/entries/${encodeURIComponent(entry)}/receipt`, {
      headers: { Accept: "application/json" },
    });
    if (!response.ok) {
      showError(`No receipt for entry ${entry} (HTTP ${response.status}).`);
      return;
    }
    receiptText.value = await response.text();
    await verify();
  }
  form.dataset.ready = "true";
}

start();
