// RFC 9162 §2.1 Merkle proofs (inclusion and consistency), as veridict_verify/merkle.py checks them.

import { concat, equal, sha256 } from "./bytes.js";

export const HASH_SIZE = 32;

export class ProofError extends Error {}

const LEAF_PREFIX = new Uint8Array([0]);
const NODE_PREFIX = new Uint8Array([1]);

export function leafHash(data) {
  return sha256(concat(LEAF_PREFIX, data));
}

export function nodeHash(left, right) {
  return sha256(concat(NODE_PREFIX, left, right));
}

// Tree sizes go beyond 2^31, where JavaScript's bit operators stop working: halve with arithmetic.
const odd = (n) => n % 2 === 1;
const half = (n) => Math.floor(n / 2);

function isPowerOfTwo(n) {
  let rest = n;
  while (rest > 1 && !odd(rest)) rest = half(rest);
  return rest === 1;
}

function checkHash(value, what) {
  if (value.length !== HASH_SIZE) {
    throw new ProofError(`${what} is ${value.length} bytes, not ${HASH_SIZE}`);
  }
}

export async function rootFromInclusionProof(index, size, leaf, proof) {
  if (!(index >= 0 && index < size)) {
    throw new ProofError(`leaf index ${index} is outside a tree of size ${size}`);
  }
  checkHash(leaf, "leaf hash");
  let fn = index;
  let sn = size - 1;
  let root = leaf;
  for (const [position, sibling] of proof.entries()) {
    checkHash(sibling, `proof hash ${position}`);
    if (sn === 0) {
      throw new ProofError(
        `proof has ${proof.length} hashes, more than a tree of size ${size} needs`,
      );
    }
    if (odd(fn) || fn === sn) {
      root = await nodeHash(sibling, root);
      while (!odd(fn) && fn) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      root = await nodeHash(root, sibling);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0) {
    throw new ProofError(
      `proof has ${proof.length} hashes, fewer than a tree of size ${size} needs`,
    );
  }
  return root;
}

export async function verifyInclusion(index, size, leaf, proof, root) {
  checkHash(root, "root");
  if (!equal(await rootFromInclusionProof(index, size, leaf, proof), root)) {
    throw new ProofError(
      `inclusion proof of leaf ${index} does not lead to the root of tree size ${size}`,
    );
  }
}

/** RFC 9162 §2.1.4.2. A proof from the empty tree proves nothing and is refused. */
export async function verifyConsistency(oldSize, newSize, oldRoot, newRoot, proof) {
  if (oldSize <= 0) throw new ProofError("a consistency proof from the empty tree proves nothing");
  if (oldSize > newSize) {
    throw new ProofError(`old size ${oldSize} is larger than new size ${newSize}`);
  }
  if (oldSize === newSize) {
    if (proof.length) throw new ProofError("trees of equal size need an empty proof");
    if (!equal(oldRoot, newRoot)) {
      throw new ProofError(`two different roots for tree size ${oldSize}`);
    }
    return;
  }
  checkHash(oldRoot, "old root");
  checkHash(newRoot, "new root");
  if (!proof.length) throw new ProofError("empty consistency proof between different sizes");
  proof.forEach((step, position) => checkHash(step, `proof hash ${position}`));
  const path = [...proof];
  // The old tree is a perfect subtree: its root starts the path.
  if (isPowerOfTwo(oldSize)) path.unshift(oldRoot);
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (odd(fn)) {
    fn = half(fn);
    sn = half(sn);
  }
  let oldAcc = path[0];
  let newAcc = path[0];
  for (const step of path.slice(1)) {
    if (sn === 0) {
      throw new ProofError(`consistency proof has ${proof.length} hashes, more than needed`);
    }
    if (odd(fn) || fn === sn) {
      oldAcc = await nodeHash(step, oldAcc);
      newAcc = await nodeHash(step, newAcc);
      while (!odd(fn) && fn) {
        fn = half(fn);
        sn = half(sn);
      }
    } else {
      newAcc = await nodeHash(newAcc, step);
    }
    fn = half(fn);
    sn = half(sn);
  }
  if (sn !== 0)
    throw new ProofError(`consistency proof has ${proof.length} hashes, fewer than needed`);
  if (!equal(oldAcc, oldRoot)) {
    throw new ProofError(`consistency proof does not lead to the root of tree size ${oldSize}`);
  }
  if (!equal(newAcc, newRoot)) {
    throw new ProofError(`consistency proof does not lead to the root of tree size ${newSize}`);
  }
}
