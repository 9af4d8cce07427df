// Verifies a Veridict receipt in the browser step by step: leaf, set, inclusion,
// checkpoint_signature, batch_header, stream_inclusion (an entry of a stream), anchor[i]; the
// same steps, statuses and verdicts as veridict-verify (verifier/veridict_verify/receipt.py).

import {
  FormatError,
  fromBase64,
  fromHex,
  jsonEqual,
  jsonParse,
  sha256,
  strictJsonParse,
  toHex,
  utf8,
  utf8Decode,
} from "./bytes.js";
import { ChainError, RPCNode, chainAnchorParse, chainAnchorVerify } from "./ethereum.js";
import { ProofError, leafHash, verifyConsistency, verifyInclusion } from "./merkle.js";
import {
  NoteError,
  formatTime,
  noteOpen,
  noteSplit,
  parseCheckpoint,
  parseSignedEntryTimestamp,
  parseTime,
  parseVerifierKey,
  pyRepr,
} from "./note.js";
import { TimestampError, timestampVerify } from "./timestamp.js";

export { sha256, toHex };

export const RECEIPT_VERSION = "veridict.receipt/v1";
export const OK = "ok";
export const FAILED = "failed";
export const PENDING = "pending";
export const SKIPPED = "skipped";
export const STEP_NAMES = [
  "leaf",
  "set",
  "inclusion",
  "checkpoint_signature",
  "batch_header",
  "stream_inclusion",
];
const ANCHOR_TYPES = ["rfc3161", "ethereum"];
const ZERO_HASH_HEX = "0".repeat(64);

// Parsed (and imported into WebCrypto) pinned keys by their text: a page verifies many receipts.
const parsedKeys = new Map();

function keyParse(text) {
  if (!parsedKeys.has(text)) parsedKeys.set(text, parseVerifierKey(text));
  return parsedKeys.get(text);
}

/** Input the CLI would refuse before any step (its exit status 2): a malformed pinned key. */
export class VerifierInputError extends Error {}

/** Raised inside a step with the reason a person reads. */
class StepFailed extends Error {}

const isObject = (value) => typeof value === "object" && value !== null && !Array.isArray(value);
// A JSON integer: receiptParse and strictJsonParse keep 4.0 and 4e0 apart as JsonFloats, and a
// boolean is no number, as in the Python verifier (type(value) is int).
const isInt = (value) => Number.isInteger(value);

function strictJson(raw, what) {
  try {
    return strictJsonParse(utf8Decode(raw));
  } catch (error) {
    if (error instanceof FormatError) throw new StepFailed(`${what} repeats a key`);
    throw new StepFailed(`${what} is not JSON: ${error.message}`);
  }
}

function b64(value, what) {
  if (typeof value !== "string") throw new StepFailed(`${what} is missing`);
  const raw = fromBase64(value);
  if (raw === null) throw new StepFailed(`${what} is not base64`);
  return raw;
}

function hexHash(value, what) {
  if (typeof value !== "string" || value.length !== 64) {
    throw new StepFailed(`${what} is not a 64-digit hex hash`);
  }
  const raw = fromHex(value);
  if (raw === null) throw new StepFailed(`${what} is not hex`);
  return raw;
}

function hexList(value, what) {
  if (!Array.isArray(value)) throw new StepFailed(`${what} is not a list of hex hashes`);
  return value.map((item, i) => hexHash(item, `${what}[${i}]`));
}

async function open(note, keys, what) {
  if (typeof note !== "string") throw new StepFailed(`${what} is missing`);
  try {
    return await noteOpen(note, keys);
  } catch (error) {
    if (error instanceof NoteError) throw new StepFailed(`${what}: ${error.message}`);
    throw error;
  }
}

function checkpointText(note, what) {
  if (typeof note !== "string") throw new StepFailed(`${what} is missing`);
  try {
    return parseCheckpoint(noteSplit(note).text);
  } catch (error) {
    if (error instanceof NoteError || error instanceof FormatError) {
      throw new StepFailed(`${what}: ${error.message}`);
    }
    throw error;
  }
}

/** One receipt's checks; each method is one step and throws StepFailed with the reason. */
class Verification {
  constructor(receipt, { keys, tsaCaPem, documentSha256, nodes }) {
    this.receipt = receipt;
    this.keys = keys;
    this.tsaCaPem = tsaCaPem;
    this.documentSha256 = documentSha256;
    this.nodes = nodes;
    this.entry = isObject(receipt.entry) ? receipt.entry : {};
  }

  async leaf() {
    const canonical = b64(this.entry.canonical_b64, "entry.canonical_b64");
    const claimed = hexHash(this.entry.leaf_hash, "entry.leaf_hash");
    if (toHex(await leafHash(canonical)) !== toHex(claimed)) {
      throw new StepFailed("SHA-256(0x00 || canonical bytes) is not entry.leaf_hash");
    }
    const leaf = strictJson(canonical, "the leaf");
    if (!isObject(leaf) || leaf.v !== 1) {
      throw new StepFailed("the leaf is not a version 1 Veridict leaf");
    }
    for (const name of ["id", "kind", "received_at"]) {
      if (!jsonEqual(leaf[name] ?? null, this.entry[name] ?? null)) {
        throw new StepFailed(`entry.${name} differs from the ${name} inside the leaf`);
      }
    }
    if ("stream" in leaf && typeof leaf.stream !== "string") {
      throw new StepFailed("the leaf's stream is not a string");
    }
    this.leafStream = leaf.stream ?? null;
    if (this.documentSha256) {
      const how = await this.document(leaf.body, this.documentSha256);
      return `leaf hash ${toHex(claimed)} matches; it registers this document (${how})`;
    }
    return `leaf hash ${toHex(claimed)} matches the canonical bytes`;
  }

  /** The leaf body registers the document with this SHA-256: by its digest, or (a private
   * document) by SHA-256(salt || digest) with the salt the receipt carries. */
  async document(body, digest) {
    if (isObject(body) && "sha256" in body) {
      if (body.sha256 !== toHex(digest)) {
        throw new StepFailed("the document's SHA-256 is not the one this entry registered");
      }
      return "by its SHA-256";
    }
    if (isObject(body) && "commitment" in body) {
      const document = this.receipt.document;
      const salt = b64(
        isObject(document) ? document.salt_b64 : null,
        "document.salt_b64 (a private document's receipt carries it only when fetched " +
          "with its AI system's key)",
      );
      const joined = new Uint8Array(salt.length + digest.length);
      joined.set(salt);
      joined.set(digest, salt.length);
      if (toHex(await sha256(joined)) !== body.commitment) {
        throw new StepFailed(
          "SHA-256(document.salt_b64 || the document's SHA-256) is not the commitment " +
            "this entry registered",
        );
      }
      return "private: by its salted commitment";
    }
    throw new StepFailed("the entry registers no document: its body has no sha256 or commitment");
  }

  async set() {
    const { text, key } = await open(this.receipt.set, this.keys, "set");
    let promise;
    try {
      promise = parseSignedEntryTimestamp(text);
    } catch (error) {
      if (error instanceof FormatError) throw new StepFailed(error.message);
      throw error;
    }
    if (promise.origin !== key.name) {
      throw new StepFailed(`the SET names log ${pyRepr(promise.origin)}, not ${pyRepr(key.name)}`);
    }
    if (promise.leafHashHex !== this.entry.leaf_hash)
      throw new StepFailed("the SET promises another leaf");
    if (promise.receivedAt !== this.entry.received_at) {
      throw new StepFailed("the SET gives another received_at");
    }
    this.promise = promise;
    return (
      `signed by ${key.name}+${key.keyIdHex}: ` +
      `include by ${promise.mmdSeconds} s after ${promise.receivedAt}`
    );
  }

  async inclusion() {
    const proof = this.receipt.proof;
    if (!isObject(proof)) throw new StepFailed("proof is not an object");
    const checkpoint = checkpointText(this.receipt.checkpoint, "checkpoint");
    const index = proof.leaf_index;
    const size = proof.tree_size;
    if (!isInt(index) || !isInt(size)) {
      throw new StepFailed("proof.leaf_index and proof.tree_size must be integers");
    }
    if (size !== checkpoint.treeSize) {
      throw new StepFailed(
        `proof.tree_size ${size} is not the checkpoint's size ${checkpoint.treeSize}`,
      );
    }
    const path = hexList(proof.inclusion, "proof.inclusion");
    const leaf = hexHash(this.entry.leaf_hash, "entry.leaf_hash");
    try {
      await verifyInclusion(index, size, leaf, path, checkpoint.root);
    } catch (error) {
      if (error instanceof ProofError) throw new StepFailed(error.message);
      throw error;
    }
    this.checkpoint = checkpoint;
    this.leafIndex = index;
    return `leaf ${index} is in the tree of size ${size}`;
  }

  async checkpoint_signature() {
    const { text, key } = await open(this.receipt.checkpoint, this.keys, "checkpoint");
    if (parseCheckpoint(text).origin !== key.name) {
      throw new StepFailed(`the checkpoint names another log than ${pyRepr(key.name)}`);
    }
    return `signed by ${key.name}+${key.keyIdHex}`;
  }

  async batch_header() {
    const batch = this.receipt.batch;
    if (!isObject(batch)) throw new StepFailed("batch is not an object");
    const raw = b64(batch.header_b64, "batch.header_b64");
    const digest = toHex(await sha256(raw));
    if (digest !== toHex(hexHash(batch.header_hash, "batch.header_hash"))) {
      throw new StepFailed("SHA-256 of the header is not batch.header_hash");
    }
    const checkpoint = this.checkpoint;
    if (digest !== checkpoint.headerHashHex) {
      throw new StepFailed("the checkpoint signs another batch header");
    }
    const header = strictJson(raw, "the batch header");
    if (!isObject(header)) throw new StepFailed("the batch header is not an object");
    this.header = header;
    const expected = {
      origin: checkpoint.origin,
      number: checkpoint.batchNumber,
      tree_size: checkpoint.treeSize,
      root: toHex(checkpoint.root),
    };
    for (const [name, value] of Object.entries(expected)) {
      if (!jsonEqual(header[name] ?? null, value)) {
        throw new StepFailed(`header ${name} is not the checkpoint's`);
      }
    }
    if (batch.number !== checkpoint.batchNumber) {
      throw new StepFailed("batch.number is not the checkpoint's batch number");
    }
    const prevSize = header.prev_tree_size;
    if (!isInt(prevSize) || !(prevSize <= this.leafIndex && this.leafIndex < checkpoint.treeSize)) {
      throw new StepFailed(`leaf ${this.leafIndex} is not among this batch's leaves`);
    }
    const prevRoot = hexHash(header.prev_root, "header prev_root");
    const consistency = hexList(header.consistency, "header consistency");
    if (prevSize === 0) {
      if (header.prev_header_hash !== ZERO_HASH_HEX || consistency.length) {
        throw new StepFailed("the first batch must have a zero prev_header_hash and no proof");
      }
    } else {
      hexHash(header.prev_header_hash, "header prev_header_hash");
      try {
        await verifyConsistency(
          prevSize,
          checkpoint.treeSize,
          prevRoot,
          checkpoint.root,
          consistency,
        );
      } catch (error) {
        if (error instanceof ProofError) {
          throw new StepFailed(`the batch does not extend the previous tree: ${error.message}`);
        }
        throw error;
      }
    }
    let sealedAt;
    try {
      sealedAt = parseTime(header.sealed_at ?? "");
    } catch (error) {
      if (error instanceof FormatError) throw new StepFailed(error.message);
      throw error;
    }
    const delay = (sealedAt - parseTime(this.promise.receivedAt)) / 1e6;
    if (delay > this.promise.mmdSeconds) {
      throw new StepFailed(
        `sealed ${delay.toFixed(0)} s after receipt, ` +
          `beyond the ${this.promise.mmdSeconds} s the SET promised`,
      );
    }
    return (
      `batch ${checkpoint.batchNumber} extends tree size ${prevSize}, ` +
      `sealed at ${formatTime(sealedAt)}`
    );
  }

  /** The entry is in its stream's tree (its system log) as the batch header committed to it:
   * the leaf names the stream, the header (v2) lists that stream's size and root. */
  async stream_inclusion() {
    const stream = this.receipt.stream;
    if (this.leafStream === null) {
      throw new StepFailed("the receipt has a stream proof but the leaf names no stream");
    }
    if (!isObject(stream)) throw new StepFailed("stream is not an object");
    if (stream.id !== this.leafStream) {
      throw new StepFailed("stream.id is not the stream the leaf names");
    }
    const listed = this.header.streams;
    if (!jsonEqual(this.header.v ?? null, 2) || !Array.isArray(listed)) {
      throw new StepFailed("the batch header is not version 2: it commits to no stream");
    }
    const items = listed.filter((item) => isObject(item));
    const mine = items.filter((item) => item.id === this.leafStream);
    if (items.length !== listed.length || mine.length !== 1) {
      throw new StepFailed(`the batch header does not list stream ${this.leafStream} once`);
    }
    const item = mine[0];
    const size = item.size;
    const prevSize = item.prev_size;
    const index = stream.leaf_index;
    const treeSize = stream.tree_size;
    if (![size, prevSize, index, treeSize].every((value) => isInt(value))) {
      throw new StepFailed("stream sizes and leaf_index must be integers");
    }
    if (treeSize !== size) {
      throw new StepFailed(
        `stream.tree_size ${treeSize} is not the stream's size ${size} in the header`,
      );
    }
    if (!(prevSize <= index && index < size)) {
      throw new StepFailed(`stream leaf ${index} is not among this batch's leaves of the stream`);
    }
    const root = hexHash(item.root, "header stream root");
    const path = hexList(stream.inclusion, "stream.inclusion");
    const leaf = hexHash(this.entry.leaf_hash, "entry.leaf_hash");
    try {
      await verifyInclusion(index, size, leaf, path, root);
    } catch (error) {
      if (error instanceof ProofError) throw new StepFailed(error.message);
      throw error;
    }
    return `leaf ${index} is in stream ${this.leafStream} of size ${size}`;
  }

  async anchor(anchor) {
    if (!isObject(anchor)) throw new StepFailed("the anchor is not an object");
    if (!ANCHOR_TYPES.includes(anchor.type)) {
      throw new StepFailed(`anchor type ${pyRepr(anchor.type)} is not one this verifier checks`);
    }
    const { text } = await open(anchor.checkpoint, this.keys, "anchor checkpoint");
    const anchored = parseCheckpoint(text);
    const own = this.checkpoint;
    if (anchored.origin !== own.origin)
      throw new StepFailed("the anchored checkpoint is of another log");
    const proof = hexList(anchor.consistency, "anchor consistency");
    try {
      await verifyConsistency(own.treeSize, anchored.treeSize, own.root, anchored.root, proof);
    } catch (error) {
      if (error instanceof ProofError) {
        throw new StepFailed(`the anchored tree does not extend the entry's: ${error.message}`);
      }
      throw error;
    }
    if (anchor.type === "ethereum") return this.ethereum(anchor, text, anchored);
    const source = `time-stamp by ${anchor.tsa ?? "None"} of tree size ${anchored.treeSize}`;
    if (!this.tsaCaPem) {
      return [
        SKIPPED,
        `${source}: consistency checked; no TSA CA pinned, so the time-stamp was not`,
      ];
    }
    const tsr = b64(anchor.tsr_b64, "anchor tsr_b64");
    let stampedAt;
    try {
      stampedAt = await timestampVerify(tsr, { message: utf8(text), caPem: this.tsaCaPem });
    } catch (error) {
      if (error instanceof TimestampError) throw new StepFailed(error.message);
      throw error;
    }
    // genTime to the second, as the Python verifier reports it.
    const seconds = Math.floor(stampedAt.getTime() / 1000);
    return [OK, `${source}: existed at ${formatTime(seconds * 1e6)}`];
  }

  /** The chain part of an ethereum anchor: checked against the user's own node, since the
   * receipt's word on a chain proves nothing. */
  async ethereum(anchor, text, anchored) {
    let claim;
    try {
      claim = chainAnchorParse(anchor);
    } catch (error) {
      if (error instanceof ChainError) throw new StepFailed(error.message);
      throw error;
    }
    const source = `${claim.describe()}, of tree size ${anchored.treeSize}`;
    if (!this.nodes.length) {
      return [SKIPPED, `${source}: consistency checked; no RPC URL given, so the chain was not`];
    }
    const node = await this.nodeFor(claim.chainId);
    let confirmations;
    try {
      confirmations = await chainAnchorVerify(claim, { body: utf8(text), node });
    } catch (error) {
      if (error instanceof ChainError) throw new StepFailed(error.message);
      throw error;
    }
    return [
      OK,
      `${source}: existed at ${formatTime(claim.blockTime)}, ` +
        `${confirmations} confirmation${confirmations !== 1 ? "s" : ""} (node ${node.name})`,
    ];
  }

  /** The given node of this chain. With one node, that node: the check then says which chain it
   * serves if it is another. */
  async nodeFor(chainId) {
    if (this.nodes.length === 1) return this.nodes[0];
    const served = [];
    for (const node of this.nodes) {
      try {
        if ((await node.chainId()) === chainId) return node;
        served.push(`${node.name} chain ${await node.chainId()}`);
      } catch (error) {
        if (!(error instanceof ChainError)) throw error;
        served.push(error.message);
      }
    }
    throw new StepFailed(`no RPC URL node serves chain ${chainId}: ${served.join("; ")}`);
  }
}

function verdictOf(steps) {
  if (steps.some((step) => step.status === FAILED)) return "failed";
  return steps.some((step) => step.status === PENDING) ? "pending" : "verified";
}

const EXIT_CODES = { verified: 0, failed: 1, pending: 3 };

/**
 * Runs the steps in order and stops at the first that fails; a receipt of an entry not sealed
 * yet verifies up to `set` and reports the rest as pending. Resolves to
 * {verdict, exitCode, steps: [{name, status, detail}]} as `veridict-verify --json` prints it;
 * rejects with VerifierInputError when a pinned key is malformed (the CLI's exit status 2).
 */
export async function verifyReceipt(
  receipt,
  { keys, tsaCaPem = null, documentSha256 = null, rpcUrls = [] } = {},
) {
  let pinned;
  let nodes;
  try {
    pinned = await Promise.all((keys ?? []).map((text) => keyParse(text)));
    nodes = rpcUrls.map((url) => new RPCNode(url));
  } catch (error) {
    throw new VerifierInputError(error.message);
  }
  if (!pinned.length) throw new VerifierInputError("pin at least one verifier key");
  const steps = [];
  const done = () => {
    const verdict = verdictOf(steps);
    return { verdict, exitCode: EXIT_CODES[verdict], steps };
  };
  if (!isObject(receipt) || receipt.version !== RECEIPT_VERSION) {
    steps.push({ name: "leaf", status: FAILED, detail: `not a ${RECEIPT_VERSION} receipt` });
    return done();
  }
  const check = new Verification(receipt, {
    keys: pinned,
    tsaCaPem: tsaCaPem || null,
    documentSha256,
    nodes,
  });
  const run = async (name, step) => {
    let outcome;
    try {
      outcome = await step();
    } catch (error) {
      if (error instanceof StepFailed || error instanceof FormatError) {
        steps.push({ name, status: FAILED, detail: error.message });
        return false;
      }
      throw error;
    }
    const [status, detail] = Array.isArray(outcome) ? outcome : [OK, outcome];
    steps.push({ name, status, detail });
    return true;
  };

  if (!((await run("leaf", () => check.leaf())) && (await run("set", () => check.set())))) {
    return done();
  }
  // Only an entry of a stream has the step: receipts of other entries (and every receipt from
  // before streams) verify with the steps they always had.
  const inStream =
    check.leafStream !== null || (receipt.stream !== null && receipt.stream !== undefined);
  const sealedSteps = ["inclusion", "checkpoint_signature", "batch_header"];
  if (inStream) sealedSteps.push("stream_inclusion");
  if (receipt.proof === null || receipt.proof === undefined) {
    for (const name of sealedSteps) {
      steps.push({
        name,
        status: PENDING,
        detail: "not sealed yet: fetch the receipt again later",
      });
    }
    return done();
  }
  for (const name of sealedSteps) {
    if (!(await run(name, () => check[name]()))) return done();
  }
  const anchors = receipt.anchors;
  if (!Array.isArray(anchors)) {
    steps.push({ name: "anchor[0]", status: FAILED, detail: "anchors is not a list" });
    return done();
  }
  for (const [position, anchor] of anchors.entries()) {
    if (!(await run(`anchor[${position}]`, () => check.anchor(anchor)))) return done();
  }
  return done();
}

/**
 * The keys this server publishes, for the user to look at and pin: GET /api/v1/log/keys (the
 * verifier keys, current first, then past ones, and the built-in TSA's CA certificate).
 */
export async function pinnedKeysFetch(base = "") {
  const response = await fetch(`${base}/api/v1/log/keys`, {
    headers: { Accept: "application/json" },
  });
  if (!response.ok) throw new Error(`GET /api/v1/log/keys answered HTTP ${response.status}`);
  const published = await response.json();
  const logKeys = [...(published.log_keys ?? [])].sort(
    (a, b) => Number(b.current) - Number(a.current),
  );
  let tsaCaPem = published.tsa_ca_pem ?? "";
  if (!tsaCaPem) {
    const ca = await fetch(`${base}/tsa/ca.pem`);
    if (ca.ok) tsaCaPem = await ca.text();
  }
  return { origin: published.origin, keys: logKeys.map((key) => key.verifier_key), tsaCaPem };
}

/**
 * Reads a receipt's JSON text, keeping numbers written as 4.0 or 4e0 apart from integers (as
 * Python's json does); a SyntaxError says why it is not JSON (the CLI's exit 2).
 */
export function receiptParse(text) {
  return jsonParse(text);
}

export { NoteError };
