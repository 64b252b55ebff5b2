// The console's only way to the server: the public APIs, as any client calls them.
//   Batch        POST /v1/<operation>                  (REST-JSON)
//   Logs         POST / with X-Amz-Target Logs_20140328.<Operation>  (JSON 1.1)
//   Workflows    /api/workflows/...                     (native JSON)
//   Metrics      GET /metrics                           (Prometheus text)
//   Job feed     GET /api/jobs/events                   (server-sent events)
// Every call is signed with SigV4 once the user has signed in with an access key.
import { presign, signHeaders } from "./sigv4.js";

const STORAGE_KEY = "openbatch.console.credentials";
const AUTH_ERRORS = new Set([
  "MissingAuthenticationTokenException",
  "UnrecognizedClientException",
  "IncompleteSignatureException",
  "InvalidSignatureException",
  "SignatureDoesNotMatch",
  "ExpiredTokenException",
]);

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message || type || `HTTP ${status}`);
    this.status = status;
    this.type = type || "";
  }
  get isAuth() {
    return AUTH_ERRORS.has(this.type) || (this.status === 403 && this.type !== "AccessDeniedException");
  }
}

export function credentials() {
  try {
    const raw = sessionStorage.getItem(STORAGE_KEY);
    return raw ? JSON.parse(raw) : null;
  } catch {
    return null;
  }
}

export function saveCredentials(value) {
  if (value) sessionStorage.setItem(STORAGE_KEY, JSON.stringify(value));
  else sessionStorage.removeItem(STORAGE_KEY);
}

async function call(method, path, { body, headers = {}, service = "batch", text = false } = {}) {
  const creds = credentials();
  let sent = { ...headers };
  const payload = body === undefined ? "" : typeof body === "string" ? body : JSON.stringify(body);
  if (creds) {
    sent = await signHeaders(creds, {
      method, url: path, headers, body: payload, region: creds.region || "us-east-1", service,
    });
  }
  let response;
  try {
    response = await fetch(path, { method, headers: sent, body: method === "GET" ? undefined : payload, cache: "no-store" });
  } catch (error) {
    throw new ApiError(0, "NetworkError", `The server cannot be reached (${error.message})`);
  }
  const raw = await response.text();
  if (!response.ok) {
    let type = response.headers.get("x-amzn-ErrorType") || "";
    let message = raw;
    try {
      const parsed = JSON.parse(raw);
      type = parsed.__type || parsed.code || type;
      message = parsed.message || parsed.Message || message;
    } catch {
      /* not JSON: keep the text */
    }
    throw new ApiError(response.status, type.split(":")[0].split("#").pop(), message);
  }
  if (text) return raw;
  return raw ? JSON.parse(raw) : {};
}

/** A Batch operation, e.g. batch("DescribeJobs", {jobs: [id]}). */
export function batch(operation, body = {}) {
  return call("POST", `/v1/${operation.toLowerCase()}`, {
    body, headers: { "Content-Type": "application/json" }, service: "batch",
  });
}

/** A CloudWatch Logs operation, e.g. logs("GetLogEvents", {...}). */
export function logs(operation, body = {}) {
  return call("POST", "/", {
    body,
    headers: { "Content-Type": "application/x-amz-json-1.1", "X-Amz-Target": `Logs_20140328.${operation}` },
    service: "logs",
  });
}

/** The native workflow API: workflows("GET", "runs?maxResults=20"). */
export function workflows(method, path, body) {
  const headers = body === undefined ? {} : { "Content-Type": "application/json" };
  return call(method, `/api/workflows/${path}`, { body, headers });
}

/** Prometheus text from /metrics, as {name: [{labels, value}]}. */
export async function metrics() {
  const text = await call("GET", "/metrics", { text: true });
  const families = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[2] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (families[match[1]] ||= []).push({ labels, value: Number(match[3]) });
  }
  return families;
}

/** Lists every page of a paginated Batch operation, up to ``cap`` items; returns {items, more}. */
export async function listAll(operation, request, key, cap = 1000) {
  const items = [];
  let token;
  do {
    const page = await batch(operation, { ...request, ...(token ? { nextToken: token } : {}) });
    items.push(...(page[key] || []));
    token = page.nextToken;
  } while (token && items.length < cap);
  return { items: items.slice(0, cap), more: Boolean(token) || items.length > cap };
}

/** The job feed: calls ``onChanges`` with each batch of status changes, ``onState`` with
 * "live" | "connecting" | "offline". Reconnects with a freshly presigned URL when needed. */
export function openFeed({ onChanges, onResync, onState }) {
  let source = null;
  let closed = false;
  let retry = 1000;
  async function connect() {
    if (closed) return;
    onState("connecting");
    const creds = credentials();
    let url = "/api/jobs/events";
    try {
      if (creds) url = await presign(creds, { url, region: creds.region || "us-east-1", service: "batch", expires: 300 });
    } catch {
      /* signing failed: try unsigned, the server will say */
    }
    source = new EventSource(url);
    source.addEventListener("ready", () => {
      retry = 1000;
      onState("live");
    });
    source.addEventListener("jobs", (event) => onChanges(JSON.parse(event.data)));
    source.addEventListener("resync", () => onResync());
    source.onerror = () => {
      // EventSource would retry the same (soon expired) URL itself: reconnect with a new signature.
      source.close();
      onState("offline");
      if (!closed) setTimeout(connect, retry);
      retry = Math.min(retry * 2, 15000);
    };
  }
  connect();
  return {
    close() {
      closed = true;
      if (source) source.close();
    },
    reconnect() {
      if (source) source.close();
      retry = 1000;
      connect();
    },
  };
}
