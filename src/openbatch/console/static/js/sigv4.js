// AWS Signature Version 4 in the browser: header signing for API calls, query presigning for the job feed.
// WebCrypto where the page is a secure context (https, localhost); a small SHA-256 of our own where it is
// not (plain http to another host), since browsers hide crypto.subtle there.

const encoder = new TextEncoder();
const subtle = globalThis.crypto && globalThis.crypto.subtle;

// --- SHA-256 and HMAC without WebCrypto (FIPS 180-4) ---------------------------------------------
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

export function sha256Bytes(data) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  const bitLength = bytes.length * 8;
  const padded = new Uint8Array(((bytes.length + 9 + 63) >> 6) << 6);
  padded.set(bytes);
  padded[bytes.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(bitLength / 2 ** 32));
  view.setUint32(padded.length - 4, bitLength >>> 0);
  const h = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let offset = 0; offset < padded.length; offset += 64) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(offset + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) >>> 0;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = (hh + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i]) >>> 0;
      const t2 = ((rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c))) >>> 0;
      hh = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += hh;
  }
  const out = new Uint8Array(32);
  const outView = new DataView(out.buffer);
  h.forEach((value, i) => outView.setUint32(i * 4, value));
  return out;
}

export function hmacBytes(key, data) {
  let k = typeof key === "string" ? encoder.encode(key) : key;
  if (k.length > 64) k = sha256Bytes(k);
  const block = new Uint8Array(64);
  block.set(k);
  const inner = new Uint8Array(64);
  const outer = new Uint8Array(64);
  for (let i = 0; i < 64; i++) {
    inner[i] = block[i] ^ 0x36;
    outer[i] = block[i] ^ 0x5c;
  }
  const message = typeof data === "string" ? encoder.encode(data) : data;
  const innerHash = sha256Bytes(concat(inner, message));
  return sha256Bytes(concat(outer, innerHash));
}

function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

// --- the primitives SigV4 uses, WebCrypto first ---------------------------------------------------
async function sha256(data) {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  if (subtle) return new Uint8Array(await subtle.digest("SHA-256", bytes));
  return sha256Bytes(bytes);
}

async function hmac(key, data) {
  const keyBytes = typeof key === "string" ? encoder.encode(key) : key;
  if (subtle) {
    const cryptoKey = await subtle.importKey("raw", keyBytes, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
    return new Uint8Array(await subtle.sign("HMAC", cryptoKey, encoder.encode(data)));
  }
  return hmacBytes(keyBytes, data);
}

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// RFC 3986 encoding as SigV4 wants it: every byte except A-Z a-z 0-9 - _ . ~ (and "/" in paths).
export function encodeRfc3986(text, keepSlash = false) {
  let out = "";
  for (const byte of encoder.encode(text)) {
    const c = String.fromCharCode(byte);
    if (/[A-Za-z0-9\-_.~]/.test(c) || (keepSlash && c === "/")) out += c;
    else out += "%" + byte.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function canonicalQuery(pairs) {
  return pairs
    .map(([k, v]) => [encodeRfc3986(k), encodeRfc3986(String(v))])
    .sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0))
    .map(([k, v]) => `${k}=${v}`)
    .join("&");
}

function amzDate(now) {
  return now.toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
}

async function signingKey(secret, date, region, service) {
  const kDate = await hmac("AWS4" + secret, date);
  const kRegion = await hmac(kDate, region);
  const kService = await hmac(kRegion, service);
  return hmac(kService, "aws4_request");
}

async function signature(credentials, { method, path, query, headers, payloadHash, timestamp, region, service }) {
  const names = Object.keys(headers).map((n) => n.toLowerCase()).sort();
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  const canonicalHeaders = names.map((n) => `${n}:${String(lower[n]).trim().replace(/\s+/g, " ")}\n`).join("");
  const signedHeaders = names.join(";");
  // The path as sent is already percent-encoded; SigV4 (botocore's form) encodes it once more.
  const canonicalRequest = [
    method,
    encodeRfc3986(path, true),
    canonicalQuery(query),
    canonicalHeaders,
    signedHeaders,
    payloadHash,
  ].join("\n");
  const date = timestamp.slice(0, 8);
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = ["AWS4-HMAC-SHA256", timestamp, scope, hex(await sha256(canonicalRequest))].join("\n");
  const key = await signingKey(credentials.secretAccessKey, date, region, service);
  return { signature: hex(await hmac(key, stringToSign)), scope, signedHeaders };
}

/** Headers to add to a request: X-Amz-Date, Authorization (and X-Amz-Security-Token with a session). */
export async function signHeaders(credentials, { method, url, headers = {}, body = "", region, service, now = new Date() }) {
  const target = new URL(url, location.href);
  const timestamp = amzDate(now);
  const signed = { ...headers, host: target.host, "x-amz-date": timestamp };
  if (credentials.sessionToken) signed["x-amz-security-token"] = credentials.sessionToken;
  const query = [...target.searchParams.entries()];
  const payloadHash = hex(await sha256(body));
  const result = await signature(credentials, {
    method, path: target.pathname, query, headers: signed, payloadHash, timestamp, region, service,
  });
  const out = { ...headers, "X-Amz-Date": timestamp };
  if (credentials.sessionToken) out["X-Amz-Security-Token"] = credentials.sessionToken;
  out.Authorization =
    `AWS4-HMAC-SHA256 Credential=${credentials.accessKeyId}/${result.scope}, ` +
    `SignedHeaders=${result.signedHeaders}, Signature=${result.signature}`;
  return out;
}

/** A presigned GET URL (query-string authentication), good for ``expires`` seconds: for EventSource,
 * which cannot send headers. */
export async function presign(credentials, { url, region, service, expires = 300, now = new Date() }) {
  const target = new URL(url, location.href);
  const timestamp = amzDate(now);
  const params = [...target.searchParams.entries()];
  params.push(
    ["X-Amz-Algorithm", "AWS4-HMAC-SHA256"],
    ["X-Amz-Credential", `${credentials.accessKeyId}/${timestamp.slice(0, 8)}/${region}/${service}/aws4_request`],
    ["X-Amz-Date", timestamp],
    ["X-Amz-Expires", String(expires)],
    ["X-Amz-SignedHeaders", "host"],
  );
  if (credentials.sessionToken) params.push(["X-Amz-Security-Token", credentials.sessionToken]);
  const result = await signature(credentials, {
    method: "GET", path: target.pathname, query: params, headers: { host: target.host },
    payloadHash: "UNSIGNED-PAYLOAD", timestamp, region, service,
  });
  params.push(["X-Amz-Signature", result.signature]);
  const query = params.map(([k, v]) => `${encodeRfc3986(k)}=${encodeRfc3986(String(v))}`).join("&");
  return `${target.origin}${target.pathname}?${query}`;
}
