// Byte helpers of the browser verifier: hex, strict base64, UTF-8 and SHA-256 through WebCrypto.

export class FormatError extends Error {}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

export function utf8(text) {
  return encoder.encode(text);
}

export function utf8Decode(bytes) {
  return strictDecoder.decode(bytes);
}

export function concat(...parts) {
  const out = new Uint8Array(parts.reduce((total, part) => total + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export function equal(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

export function toHex(bytes) {
  let out = "";
  for (const byte of bytes) out += byte.toString(16).padStart(2, "0");
  return out;
}

/** Hex digits (either case, as Python's bytes.fromhex) to bytes; null when they are not hex. */
export function fromHex(text) {
  if (typeof text !== "string" || text.length % 2 || !/^[0-9a-fA-F]*$/.test(text)) return null;
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

/** Base64 as Python's base64.b64decode(validate=True) reads it; null when it is not base64. */
export function fromBase64(text) {
  if (typeof text !== "string" || text.length % 4 || !/^[A-Za-z0-9+/]*={0,2}$/.test(text)) {
    return null;
  }
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

export function toBase64(bytes) {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

export async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

/** JSON equality as Python's == sees parsed JSON: by value, objects regardless of key order. */
export function jsonEqual(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) return a.length === b.length && a.every((item, i) => jsonEqual(item, b[i]));
  const keys = Object.keys(a);
  if (keys.length !== Object.keys(b).length) return false;
  return keys.every((key) => Object.hasOwn(b, key) && jsonEqual(a[key], b[key]));
}

/**
 * A JSON number written with a fraction or an exponent (4.0, 4e0). JSON.parse reads 4.0 as the
 * integer 4 where Python's json reads a float; keeping it apart lets both verifiers hold to one
 * rule: where a receipt has an integer, it must be written as one.
 */
export class JsonFloat {
  constructor(source) {
    this.source = source;
    Object.freeze(this);
  }

  toString() {
    return this.source;
  }
}

/**
 * JSON.parse, but numbers with a fraction or an exponent become JsonFloats; with `strict`, an
 * object repeating a key throws FormatError (JSON.parse keeps the last silently). By its own
 * scan of the text, rather than a reviver's context.source, which not every browser has.
 */
export function jsonParse(text, { strict = false } = {}) {
  JSON.parse(text); // throws SyntaxError on malformed JSON first
  let at = 0;
  const space = () => {
    while (/[ \t\n\r]/.test(text[at] ?? "")) at++;
  };
  const string = () => {
    const start = at++;
    while (text[at] !== '"') at += text[at] === "\\" ? 2 : 1;
    at++;
    return JSON.parse(text.slice(start, at));
  };
  const value = () => {
    space();
    if (text[at] === "{") {
      at++;
      // defineProperty, not assignment: a "__proto__" key is data, as JSON.parse makes it.
      const object = {};
      space();
      if (text[at] === "}") {
        at++;
        return object;
      }
      for (;;) {
        space();
        const key = string();
        if (strict && Object.hasOwn(object, key)) throw new FormatError("repeats a key");
        space();
        at++; // the colon
        const item = value();
        Object.defineProperty(object, key, {
          value: item,
          writable: true,
          enumerable: true,
          configurable: true,
        });
        space();
        if (text[at++] === "}") return object;
      }
    }
    if (text[at] === "[") {
      at++;
      const array = [];
      space();
      if (text[at] === "]") {
        at++;
        return array;
      }
      for (;;) {
        array.push(value());
        space();
        if (text[at++] === "]") return array;
      }
    }
    if (text[at] === '"') return string();
    const start = at;
    while (at < text.length && !/[,\]} \t\n\r]/.test(text[at])) at++;
    const token = text.slice(start, at);
    if (token === "true") return true;
    if (token === "false") return false;
    if (token === "null") return null;
    return /[.eE]/.test(token) ? new JsonFloat(token) : Number(token);
  };
  return value();
}

/** jsonParse refusing an object that repeats a key. */
export function strictJsonParse(text) {
  return jsonParse(text, { strict: true });
}
