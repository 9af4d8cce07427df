// The home page: hash a document in the browser (never uploaded), look its digest up in the
// public API, show where it is in the log, then verify its receipt with the browser verifier.
// The verifier (and through it the vendored pkijs, which the page's import map resolves) is
// loaded when a receipt is to be checked, so that the hashing below works on any page.
const VERIFIER = "/static/verifier/receipt.js";

const SLICE = 8 * 1024 * 1024;

// ---- SHA-256 ------------------------------------------------------------------------------------
// WebCrypto has no incremental digest: files up to the page's limit are hashed in one call; larger
// ones go through this small streaming SHA-256 (FIPS 180-4), a slice at a time, so that memory
// stays flat. The e2e tests compare both on the same bytes.

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

export class StreamingSha256 {
  constructor() {
    this.state = new Int32Array([
      0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]);
    this.block = new Uint8Array(64);
    this.filled = 0;
    this.length = 0; // bytes hashed so far
    this.w = new Int32Array(64);
  }

  compress(bytes, offset) {
    // Plain locals and 32-bit integer arithmetic: V8 keeps them in registers.
    const w = this.w;
    for (let i = 0, j = offset; i < 16; i++, j += 4) {
      w[i] = (bytes[j] << 24) | (bytes[j + 1] << 16) | (bytes[j + 2] << 8) | bytes[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const x = w[i - 15];
      const y = w[i - 2];
      const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
      const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    const s = this.state;
    let a = s[0] | 0, b = s[1] | 0, c = s[2] | 0, d = s[3] | 0;
    let e = s[4] | 0, f = s[5] | 0, g = s[6] | 0, h = s[7] | 0;
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (h + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      h = g;
      g = f;
      f = e;
      e = (d + t1) | 0;
      d = c;
      c = b;
      b = a;
      a = (t1 + t2) | 0;
    }
    s[0] = (s[0] + a) | 0;
    s[1] = (s[1] + b) | 0;
    s[2] = (s[2] + c) | 0;
    s[3] = (s[3] + d) | 0;
    s[4] = (s[4] + e) | 0;
    s[5] = (s[5] + f) | 0;
    s[6] = (s[6] + g) | 0;
    s[7] = (s[7] + h) | 0;
  }

  update(bytes) {
    let offset = 0;
    this.length += bytes.length;
    if (this.filled) {
      const take = Math.min(64 - this.filled, bytes.length);
      this.block.set(bytes.subarray(0, take), this.filled);
      this.filled += take;
      offset = take;
      if (this.filled < 64) return this;
      this.compress(this.block, 0);
      this.filled = 0;
    }
    for (; offset + 64 <= bytes.length; offset += 64) this.compress(bytes, offset);
    this.block.set(bytes.subarray(offset), 0);
    this.filled = bytes.length - offset;
    return this;
  }

  digest() {
    const bits = this.length * 8;
    const tail = new Uint8Array(this.filled < 56 ? 64 - this.filled : 128 - this.filled);
    tail[0] = 0x80;
    const view = new DataView(tail.buffer);
    view.setUint32(tail.length - 8, Math.floor(bits / 2 ** 32));
    view.setUint32(tail.length - 4, bits >>> 0);
    this.update(tail);
    const out = new Uint8Array(32);
    const outView = new DataView(out.buffer);
    this.state.forEach((word, i) => outView.setUint32(4 * i, word));
    return out;
  }
}

/** SHA-256 of a File or Blob: WebCrypto for the whole file up to `wholeLimit`, else in slices. */
export async function fileSha256(file, { wholeLimit, onProgress = () => {} } = {}) {
  if (file.size <= wholeLimit) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    onProgress(file.size);
    return new Uint8Array(digest);
  }
  const hasher = new StreamingSha256();
  for (let start = 0; start < file.size; start += SLICE) {
    const slice = file.slice(start, Math.min(start + SLICE, file.size));
    hasher.update(new Uint8Array(await slice.arrayBuffer()));
    onProgress(Math.min(start + SLICE, file.size));
  }
  return hasher.digest();
}

// ---- The page --------------------------------------------------------------------------------

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function link(href, text) {
  return el("a", { href }, text);
}

function fields(pairs) {
  const list = el("dl", { class: "fields" });
  for (const [term, value] of pairs) list.append(el("dt", {}, term), el("dd", {}, value));
  return list;
}

function toHex(bytes) {
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}

function fromHex(hex) {
  return new Uint8Array(hex.match(/../g).map((pair) => parseInt(pair, 16)));
}

function anchorText(anchor) {
  if (anchor.type === "rfc3161") {
    return anchor.tsa === "builtin"
      ? "RFC 3161 time-stamp by this instance's own TSA (not independent of us)"
      : `RFC 3161 time-stamp by ${anchor.tsa} (independent)`;
  }
  if (anchor.type === "ethereum") {
    return `Ethereum chain ${anchor.chain_id}, block ${anchor.block_number}, transaction ${anchor.tx_hash} (independent)`;
  }
  return anchor.type;
}

function checkpointSize(note) {
  const lines = (note || "").split("\n");
  return lines.length > 1 ? lines[1] : "?";
}

const VERDICT_TEXT = {
  verified: "Verified: every step checks out.",
  failed: "Failed: the receipt does not verify.",
  pending: "Not sealed yet: only the signed entry timestamp can be checked for now.",
};

async function verifyInto(container, receipt, digest) {
  const status = el("p", { class: "verdict status pending", "data-verdict": "running" }, "Verifying the receipt in your browser…");
  container.append(status);
  try {
    const { pinnedKeysFetch, verifyReceipt } = await import(VERIFIER);
    const pinned = await pinnedKeysFetch();
    const report = await verifyReceipt(receipt, {
      keys: pinned.keys,
      tsaCaPem: pinned.tsaCaPem,
      documentSha256: digest,
    });
    const failedStep = report.steps.find((step) => step.status === "failed");
    status.className = `verdict status ${report.verdict === "verified" ? "ok" : report.verdict}`;
    status.dataset.verdict = report.verdict;
    status.textContent = VERDICT_TEXT[report.verdict] || report.verdict;
    if (failedStep) status.textContent += ` It fails at step ${failedStep.name}: ${failedStep.detail}`;
    const steps = el("ol", { class: "steps", "aria-label": "Verification steps" });
    for (const step of report.steps) {
      steps.append(
        el("li", { class: step.status, "data-step": step.name, "data-status": step.status },
          el("strong", {}, `${step.name}: ${step.status}`), " — ", step.detail),
      );
    }
    container.append(steps);
    container.append(
      el("p", { class: "hint" },
        "Checked against the keys this server publishes now. To check against keys you pinned " +
        "yourself, use ", link(`/verify/receipt?entry=${receipt.entry.id}`, "the receipt page"),
        " or ", link("/keys/check-yourself", "veridict-verify"), "."),
    );
  } catch (error) {
    status.className = "verdict status failed";
    status.dataset.verdict = "error";
    status.textContent = `The receipt could not be checked: ${error.message}`;
  }
}

async function showRegistration(result, registration, digest) {
  const article = el("article", { class: "registration", "data-entry": registration.id });
  article.append(el("h2", {}, `Registered by ${registration.system.name}`));
  const pairs = [
    ["When", el("time", { datetime: registration.registered_at }, registration.registered_at)],
    ["AI system", `${registration.system.name} (${registration.system.slug})`],
    ["Entry", link(`/log/entries/${registration.id}`, registration.id)],
    registration.sealed
      ? ["Batch", el("span", {}, link(`/log/batches/${registration.batch}`, `batch ${registration.batch}`), `, leaf ${registration.leaf_index}`)]
      : ["Batch", "not sealed yet: it will be within the log's maximum merge delay"],
  ];
  article.append(fields(pairs));
  result.append(article);
  let receipt;
  try {
    const response = await fetch(registration.receipt_url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`the server answered ${response.status}`);
    // The verifier's own parser, as on the receipt page: JSON.parse would read 4.0 as the
    // integer 4, which veridict-verify refuses.
    const { receiptParse } = await import(VERIFIER);
    receipt = receiptParse(await response.text());
  } catch (error) {
    article.append(el("p", { class: "status failed" }, `The receipt could not be fetched: ${error.message}`));
    return;
  }
  const anchors = el("ul", { class: "anchors" });
  for (const anchor of receipt.anchors || []) {
    anchors.append(el("li", {}, `${anchorText(anchor)}, over the checkpoint of tree size ${checkpointSize(anchor.checkpoint)}`));
  }
  if (!anchors.childElementCount) anchors.append(el("li", {}, "not anchored yet"));
  article.append(el("h3", {}, "Anchored"), anchors);
  article.append(el("p", {}, link(registration.receipt_url, "Receipt (JSON)")));
  await verifyInto(article, receipt, digest);
}

async function lookUp(hex, result) {
  result.replaceChildren(el("p", {}, `Looking up ${hex}…`));
  let response;
  try {
    response = await fetch(`/api/v1/documents/${hex}`, { headers: { Accept: "application/json" } });
  } catch (error) {
    result.replaceChildren(el("p", { class: "status failed" }, `The lookup failed: ${error.message}`));
    return;
  }
  const head = el("p", {}, "SHA-256 ", el("code", { class: "digest", id: "looked-up-digest" }, hex));
  if (response.status === 404) {
    result.replaceChildren(
      head,
      el("p", { class: "status failed not-found", "data-found": "no" }, el("strong", {}, "Not found."),
        " No AI system has publicly registered a document with this digest. Either it " +
        "was never registered, or it was registered privately, or this file differs from the " +
        "registered one (a single changed byte changes the digest)."),
    );
    return;
  }
  if (response.status === 429) {
    const wait = response.headers.get("Retry-After") || "a few";
    result.replaceChildren(head, el("p", { class: "status failed" }, `Too many lookups from your address: try again in ${wait} seconds.`));
    return;
  }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    const message = body.error ? body.error.message : `the server answered ${response.status}`;
    result.replaceChildren(head, el("p", { class: "status failed" }, `The lookup failed: ${message}`));
    return;
  }
  const answer = await response.json();
  const count = answer.registrations.length;
  result.replaceChildren(
    head,
    el("p", { class: "status ok found", "data-found": "yes" }, el("strong", {}, `Found: registered ${count} time${count === 1 ? "" : "s"}.`)),
  );
  const digest = fromHex(hex);
  for (const registration of answer.registrations) await showRegistration(result, registration, digest);
}

function start() {
  const fileForm = document.getElementById("document-form");
  const fileInput = document.getElementById("document-file");
  const digestForm = document.getElementById("digest-form");
  const digestInput = document.getElementById("digest");
  const result = document.getElementById("document-result");
  if (!fileForm || !digestForm || !result) return; // imported elsewhere for its hashing alone
  const wholeLimit = Number(fileForm.dataset.wholeFileLimit);

  async function run(task) {
    result.setAttribute("aria-busy", "true");
    try {
      await task();
    } finally {
      result.setAttribute("aria-busy", "false");
      result.dataset.done = String(Number(result.dataset.done || 0) + 1);
    }
  }

  async function hashFile(file) {
    const progress = el("progress", { max: String(file.size || 1), value: "0", "aria-label": "Hashing" });
    result.replaceChildren(el("p", {}, `Hashing ${file.name} (${file.size.toLocaleString()} bytes) in your browser…`), progress);
    const started = performance.now();
    const digest = await fileSha256(file, { wholeLimit, onProgress: (done) => { progress.value = done; } });
    const hex = toHex(digest);
    digestInput.value = hex;
    result.dataset.hashMs = String(Math.round(performance.now() - started));
    await lookUp(hex, result);
  }

  fileInput.addEventListener("change", () => {
    if (fileInput.files.length) run(() => hashFile(fileInput.files[0]));
  });
  for (const type of ["dragenter", "dragover"]) {
    fileForm.addEventListener(type, (event) => { event.preventDefault(); fileForm.classList.add("dragging"); });
  }
  fileForm.addEventListener("dragleave", () => fileForm.classList.remove("dragging"));
  fileForm.addEventListener("drop", (event) => {
    event.preventDefault();
    fileForm.classList.remove("dragging");
    const file = event.dataTransfer.files[0];
    if (file) run(() => hashFile(file));
  });
  fileForm.addEventListener("submit", (event) => event.preventDefault());
  digestForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const hex = digestInput.value.trim().toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hex)) {
      result.replaceChildren(el("p", { class: "status failed", role: "alert" }, "A SHA-256 digest is 64 hexadecimal digits (0-9, a-f)."));
      return;
    }
    run(() => lookUp(hex, result));
  });
  document.documentElement.dataset.documentPage = "ready";
}

start();
