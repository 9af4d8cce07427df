// C2SP signed notes with Ed25519 (WebCrypto) and the texts Veridict signs: checkpoints and SETs,
// read as veridict_verify/note.py and formats.py read them.

import { FormatError, concat, fromBase64, sha256, toHex, utf8 } from "./bytes.js";

export class NoteError extends Error {}

export const SET_HEADER = "veridict/set/v1";
export const BATCH_EXTENSION = "veridict-batch";
const ALG_ED25519 = 0x01;
const SIGNATURE_PREFIX = "\u2014 "; // an em dash and a space start every signature line

export async function keyId(name, publicKey) {
  const digest = await sha256(concat(utf8(name), new Uint8Array([0x0a, ALG_ED25519]), publicKey));
  return digest.slice(0, 4);
}

function checkName(name) {
  if (!name || name.includes("+") || /\s/u.test(name)) {
    throw new NoteError(`key name ${JSON.stringify(name)} is empty or holds '+' or white space`);
  }
}

/** Reads `<name>+<hex key id>+<base64(0x01 || public key)>` and checks that the id fits. */
export async function parseVerifierKey(text) {
  const trimmed = String(text).trim();
  // Only the first two "+" separate fields: the base64 key may itself hold "+".
  const first = trimmed.indexOf("+");
  const second = first < 0 ? -1 : trimmed.indexOf("+", first + 1);
  if (second < 0) throw new NoteError("a verifier key reads <name>+<hex key id>+<base64 key>");
  const name = trimmed.slice(0, first);
  const hexId = trimmed.slice(first + 1, second);
  const encoded = trimmed.slice(second + 1);
  checkName(name);
  if (!/^[0-9a-f]{8}$/.test(hexId)) {
    throw new NoteError(`verifier key id ${JSON.stringify(hexId)} is not 8 lower-case hex digits`);
  }
  const raw = fromBase64(encoded);
  if (raw === null) throw new NoteError("verifier key is not hex and base64");
  if (raw.length !== 33 || raw[0] !== ALG_ED25519) {
    throw new NoteError("verifier key is not an Ed25519 key (0x01 and 32 bytes)");
  }
  const publicKey = raw.slice(1);
  if (toHex(await keyId(name, publicKey)) !== hexId) {
    throw new NoteError(`verifier key id ${hexId} does not match its name and key`);
  }
  const cryptoKey = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, [
    "verify",
  ]);
  return { name, keyIdHex: hexId, publicKey, cryptoKey, text: trimmed };
}

/** The note's text and its signatures as {name, keyIdHex, signature}. */
export function noteSplit(note) {
  const cut = note.lastIndexOf("\n\n");
  if (cut < 0 || !note.endsWith("\n")) {
    throw new NoteError("not a signed note: no blank line before the signatures");
  }
  const text = note.slice(0, cut + 1);
  const block = note.slice(cut + 2);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0009\u000b-\u001f]/.test(note)) {
    throw new NoteError("a note holds no control characters but newlines");
  }
  const signatures = [];
  for (const line of block.slice(0, -1).split("\n")) {
    if (!line.startsWith(SIGNATURE_PREFIX)) {
      throw new NoteError(`signature line ${JSON.stringify(line)} does not start with an em dash`);
    }
    const rest = line.slice(SIGNATURE_PREFIX.length);
    const space = rest.indexOf(" ");
    const name = space < 0 ? rest : rest.slice(0, space);
    const raw = fromBase64(space < 0 ? "" : rest.slice(space + 1));
    if (raw === null) throw new NoteError(`signature of ${JSON.stringify(name)} is not base64`);
    if (raw.length < 5) throw new NoteError(`signature of ${JSON.stringify(name)} is too short`);
    signatures.push({ name, keyIdHex: toHex(raw.slice(0, 4)), signature: raw.slice(4) });
  }
  if (!signatures.length) throw new NoteError("the note carries no signature");
  return { text, signatures };
}

async function ed25519Verifies(key, message, signature) {
  try {
    return await crypto.subtle.verify({ name: "Ed25519" }, key.cryptoKey, signature, message);
  } catch {
    return false;
  }
}

/**
 * The text of a note that one of the pinned keys signed, with that key; NoteError otherwise.
 * Signatures by keys that are not pinned are ignored, as C2SP says; a signature that claims a
 * pinned key's name and id but does not verify is an error, not something to skip.
 */
export async function noteOpen(note, keys) {
  const { text, signatures } = noteSplit(note);
  for (const { name, keyIdHex, signature } of signatures) {
    const key = keys.find((pinned) => pinned.name === name && pinned.keyIdHex === keyIdHex);
    if (!key) continue;
    if (!(await ed25519Verifies(key, utf8(text), signature))) {
      throw new NoteError(`the signature by ${name}+${keyIdHex} does not verify`);
    }
    return { text, key };
  }
  const names = signatures.map(({ name, keyIdHex }) => `${name}+${keyIdHex}`).join(", ");
  throw new NoteError(`no pinned key signed this note (signed by ${names})`);
}

// --- the signed texts ---------------------------------------------------------------------------

const RFC3339_MICROS = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{6})Z$/;

/** Microseconds since the epoch of an RFC 3339 UTC time with microseconds and Z. */
export function parseTime(text) {
  const match = typeof text === "string" ? RFC3339_MICROS.exec(text) : null;
  if (!match) {
    throw new FormatError(`time ${pyRepr(text)} is not RFC 3339 UTC with microseconds and Z`);
  }
  const [year, month, day, hour, minute, second, micros] = match.slice(1).map(Number);
  const millis = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(millis);
  if (
    back.getUTCMonth() !== month - 1 ||
    back.getUTCDate() !== day ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    throw new FormatError(`time ${pyRepr(text)} is not a calendar time`);
  }
  return millis * 1000 + micros;
}

export function formatTime(micros) {
  const date = new Date(Math.floor(micros / 1000));
  return `${date.toISOString().slice(0, 19)}.${String(((micros % 1e6) + 1e6) % 1e6).padStart(6, "0")}Z`;
}

/** Python's repr of a str, near enough for the messages that quote one. */
export function pyRepr(text) {
  if (text === null || text === undefined) return "None";
  return typeof text === "string"
    ? `'${text.replaceAll("\\", "\\\\").replaceAll("'", "\\'")}'`
    : String(text);
}

function parseDecimal(text, what) {
  if (!/^[0-9]+$/.test(text) || (text.length > 1 && text[0] === "0")) {
    throw new FormatError(`${what} ${pyRepr(text)} is not a decimal number`);
  }
  return Number(text);
}

function parseHexHash(text, what) {
  if (!/^[0-9a-f]{64}$/.test(text)) {
    throw new FormatError(`${what} ${pyRepr(text)} is not 64 lower-case hex digits`);
  }
  return text;
}

/** A checkpoint body: {origin, treeSize, root (bytes), batchNumber, headerHashHex}. */
export function parseCheckpoint(body) {
  const lines = body.split("\n");
  if (lines.length !== 5 || lines[4] !== "") {
    throw new FormatError("a checkpoint has four lines: origin, size, root, veridict-batch");
  }
  const [origin, sizeText, rootText, extension] = lines;
  const root = fromBase64(rootText);
  if (root === null) throw new FormatError("checkpoint root is not base64");
  if (root.length !== 32) throw new FormatError("checkpoint root is not 32 bytes");
  const fields = extension.split(" ");
  if (fields.length !== 3 || fields[0] !== BATCH_EXTENSION) {
    throw new FormatError(
      `checkpoint extension ${pyRepr(extension)} is not 'veridict-batch N HASH'`,
    );
  }
  return {
    origin,
    treeSize: parseDecimal(sizeText, "checkpoint tree size"),
    root,
    batchNumber: parseDecimal(fields[1], "checkpoint batch number"),
    headerHashHex: parseHexHash(fields[2], "checkpoint batch header hash"),
  };
}

/** A signed entry timestamp's body: {origin, leafHashHex, receivedAt, mmdSeconds}. */
export function parseSignedEntryTimestamp(body) {
  const lines = body.split("\n");
  if (lines.length !== 6 || lines[0] !== SET_HEADER || lines[5] !== "") {
    throw new FormatError(`a signed entry timestamp starts with ${SET_HEADER} and has five lines`);
  }
  parseTime(lines[3]);
  return {
    origin: lines[1],
    leafHashHex: parseHexHash(lines[2], "SET leaf hash"),
    receivedAt: lines[3],
    mmdSeconds: parseDecimal(lines[4], "SET maximum merge delay"),
  };
}
