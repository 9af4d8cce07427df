// Checks an Ethereum anchor against a JSON-RPC node the user chooses, as veridict_verify/ethereum.py.

import { formatTime, parseTime, pyRepr } from "./note.js";
import { sha256, toHex } from "./bytes.js";

export class ChainError extends Error {}
export class NodeError extends ChainError {}

const HASH = /^0x[0-9a-f]{64}$/;
const QUANTITY = /^0x[0-9a-fA-F]{1,64}$/;
const DATA = /^0x(?:[0-9a-fA-F]{2})*$/;
const TIMEOUT_MS = 10000;

/** What a receipt's ethereum anchor claims; ChainError names the field that is malformed. */
export function chainAnchorParse(anchor) {
  for (const name of ["chain_id", "block_number"]) {
    const value = anchor[name];
    if (!Number.isInteger(value) || value < 0) {
      throw new ChainError(`anchor ${name} is not a whole number`);
    }
  }
  for (const name of ["tx_hash", "block_hash"]) {
    if (typeof anchor[name] !== "string" || !HASH.test(anchor[name])) {
      throw new ChainError(`anchor ${name} is not 0x and 64 lower-case hex digits`);
    }
  }
  let blockTime;
  try {
    blockTime = parseTime(typeof anchor.block_time === "string" ? anchor.block_time : "");
  } catch (error) {
    throw new ChainError(`anchor block_time: ${error.message}`);
  }
  return {
    chainId: anchor.chain_id,
    txHash: anchor.tx_hash,
    blockNumber: anchor.block_number,
    blockHash: anchor.block_hash,
    blockTime,
    describe() {
      return `transaction ${this.txHash} on chain ${this.chainId} in block ${this.blockNumber}`;
    },
  };
}

/** An Ethereum JSON-RPC node over HTTP(S); it must allow this page's origin (CORS). */
export class RPCNode {
  constructor(url) {
    let parts;
    try {
      parts = new URL(url);
    } catch {
      parts = null;
    }
    if (!parts || !["http:", "https:"].includes(parts.protocol) || !parts.hostname) {
      throw new Error(`RPC URL ${pyRepr(url)} is not an http(s) URL`);
    }
    this.url = url;
    // Named without path, query or user part: a provider's URL often holds an API key.
    this.name = `${parts.protocol}//${parts.host}`;
    this.nextId = 1;
    this.cachedChainId = null;
  }

  async call(method, params) {
    const id = this.nextId++;
    let answer;
    try {
      const response = await fetch(this.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id, method, params }),
        signal: AbortSignal.timeout(TIMEOUT_MS),
        credentials: "omit",
      });
      if (!response.ok) {
        throw new NodeError(
          `the node at ${this.name} answered HTTP ${response.status} to ${method}`,
        );
      }
      const raw = await response.text();
      try {
        answer = JSON.parse(raw);
      } catch {
        throw new NodeError(`the node at ${this.name} answered ${method} with no JSON`);
      }
    } catch (error) {
      if (error instanceof NodeError) throw error;
      throw new NodeError(`the node at ${this.name} did not answer ${method}: ${error.message}`);
    }
    if (typeof answer !== "object" || answer === null || answer.id !== id) {
      throw new NodeError(`the node at ${this.name} answered ${method} with no JSON-RPC reply`);
    }
    if (answer.error !== undefined && answer.error !== null) {
      const message = typeof answer.error === "object" ? answer.error.message : answer.error;
      throw new NodeError(
        `the node at ${this.name} refused ${method}: ${String(message).slice(0, 200)}`,
      );
    }
    if (!("result" in answer)) {
      throw new NodeError(`the node at ${this.name} answered ${method} with no result`);
    }
    return answer.result;
  }

  async chainId() {
    if (this.cachedChainId === null) {
      this.cachedChainId = quantity(await this.call("eth_chainId", []), "eth_chainId", this);
    }
    return this.cachedChainId;
  }
}

function quantity(value, what, node) {
  if (typeof value !== "string" || !QUANTITY.test(value)) {
    throw new NodeError(
      `the node at ${node.name} gave ${what} as ${JSON.stringify(value)}, not a hex quantity`,
    );
  }
  return Number(BigInt(value));
}

function hash(value, what, node) {
  if (typeof value !== "string" || !HASH.test(value.toLowerCase())) {
    throw new NodeError(
      `the node at ${node.name} gave ${what} as ${JSON.stringify(value)}, not a 32-byte hash`,
    );
  }
  return value.toLowerCase();
}

function object(value, what, node) {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new NodeError(
      `the node at ${node.name} answered ${what} with ${JSON.stringify(value)}, not an object`,
    );
  }
  return value;
}

/**
 * Checks that the claimed transaction carries SHA-256(body) and sits in the claimed block of the
 * claimed chain, as the node sees it; returns the confirmations. ChainError names what differs.
 */
export async function chainAnchorVerify(claim, { body, node }) {
  const chainId = await node.chainId();
  if (chainId !== claim.chainId) {
    throw new ChainError(
      `the node at ${node.name} serves chain ${chainId}, but the anchor is on chain ` +
        `${claim.chainId}: give the RPC URL of a node of that chain`,
    );
  }
  const found = await node.call("eth_getTransactionByHash", [claim.txHash]);
  if (found === null)
    throw new ChainError(`chain ${claim.chainId} has no transaction ${claim.txHash}`);
  const transaction = object(found, "eth_getTransactionByHash", node);
  if (hash(transaction.hash, "the transaction hash", node) !== claim.txHash) {
    throw new NodeError(`the node at ${node.name} answered with another transaction`);
  }
  const data = transaction.input ?? transaction.data;
  if (typeof data !== "string" || !DATA.test(data)) {
    throw new NodeError(
      `the node at ${node.name} gave the transaction's input as ${JSON.stringify(data)}`,
    );
  }
  const expected = `0x${toHex(await sha256(body))}`;
  if (data.toLowerCase() !== expected) {
    throw new ChainError(
      `transaction ${claim.txHash} carries ${data.toLowerCase().slice(0, 66)}, not SHA-256 of the ` +
        `anchored checkpoint (${expected})`,
    );
  }
  if (transaction.chainId !== undefined && transaction.chainId !== null) {
    const signedFor = quantity(transaction.chainId, "the transaction's chainId", node);
    if (signedFor !== claim.chainId) {
      throw new ChainError(`transaction ${claim.txHash} is signed for chain ${signedFor}`);
    }
  }
  if (transaction.blockHash === undefined || transaction.blockHash === null) {
    throw new ChainError(`transaction ${claim.txHash} is not mined yet (pending)`);
  }
  const inBlock = hash(transaction.blockHash, "the transaction's blockHash", node);
  const inNumber = quantity(transaction.blockNumber, "the transaction's blockNumber", node);
  if (inNumber !== claim.blockNumber) {
    throw new ChainError(
      `transaction ${claim.txHash} is in block ${inNumber}, not anchor block_number ${claim.blockNumber}`,
    );
  }
  if (inBlock !== claim.blockHash) {
    throw new ChainError(
      `transaction ${claim.txHash} is in block ${inBlock}, not anchor block_hash ${claim.blockHash}`,
    );
  }
  const blockFound = await node.call("eth_getBlockByNumber", [
    `0x${claim.blockNumber.toString(16)}`,
    false,
  ]);
  if (blockFound === null) {
    throw new ChainError(
      `the node at ${node.name} has no block ${claim.blockNumber}: is it synced?`,
    );
  }
  const block = object(blockFound, "eth_getBlockByNumber", node);
  const blockHash = hash(block.hash, "the block hash", node);
  if (blockHash !== claim.blockHash) {
    throw new ChainError(
      `block ${claim.blockNumber} of chain ${claim.chainId} is ${blockHash}, ` +
        `not anchor block_hash ${claim.blockHash}`,
    );
  }
  if (!Array.isArray(block.transactions)) {
    throw new NodeError(`the node at ${node.name} gave block ${claim.blockNumber} no transactions`);
  }
  // Hashes, as asked; a node that sends whole transactions anyway is understood too.
  const hashes = new Set(
    block.transactions.map((item) =>
      String(typeof item === "object" && item ? item.hash : item).toLowerCase(),
    ),
  );
  if (!hashes.has(claim.txHash)) {
    throw new ChainError(`block ${claim.blockNumber} does not list transaction ${claim.txHash}`);
  }
  const timestamp = quantity(block.timestamp, "the block timestamp", node);
  if (claim.blockTime % 1e6 !== 0 || claim.blockTime / 1e6 !== timestamp) {
    throw new ChainError(
      `block ${claim.blockNumber} was made at ${formatTime(timestamp * 1e6)}, ` +
        `not anchor block_time ${formatTime(claim.blockTime)}`,
    );
  }
  const latest = quantity(await node.call("eth_blockNumber", []), "eth_blockNumber", node);
  if (latest < claim.blockNumber) {
    throw new NodeError(
      `the node at ${node.name} says the latest block is ${latest}, ` +
        `before block ${claim.blockNumber} it has just served`,
    );
  }
  return latest - claim.blockNumber + 1;
}
