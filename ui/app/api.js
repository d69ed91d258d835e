// The GraphQL client: same-origin requests. In local mode the server's session cookie
// (HttpOnly, set when `/` was served) makes them the local user; otherwise the token the
// user pasted (kept in sessionStorage only, never in localStorage or a cookie) goes in
// `Authorization: Bearer`.

const TOKEN_KEY = "cairn.token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value.trim());
  else sessionStorage.removeItem(TOKEN_KEY);
}

export class ApiError extends Error {
  constructor(message, code, status) {
    super(message);
    this.code = code;
    this.status = status;
  }
}

/** Runs a query or mutation; resolves to `data`, rejects with the first error. */
export async function gql(query, variables = {}) {
  const headers = { "Content-Type": "application/json", Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = "Bearer " + t;
  const response = await fetch("/graphql", {
    method: "POST",
    credentials: "same-origin",
    headers,
    body: JSON.stringify({ query, variables }),
  });
  let body;
  try {
    body = await response.json();
  } catch {
    throw new ApiError(`HTTP ${response.status}`, "HTTP", response.status);
  }
  if (body.errors && body.errors.length) {
    const e = body.errors[0];
    throw new ApiError(e.message, (e.extensions && e.extensions.code) || "ERROR", response.status);
  }
  return body.data;
}

/** `h("div", {class: "x", onclick: f}, "text", child)`: an element, never through innerHTML. */
export function h(tag, attrs = {}, ...children) {
  const el = tag.startsWith("svg:")
    ? document.createElementNS("http://www.w3.org/2000/svg", tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Number(seconds);
  if (s % 86400 === 0) return `${s / 86400}d`;
  if (s % 3600 === 0) return `${s / 3600}h`;
  if (s % 60 === 0) return `${s / 60}m`;
  return `${s}s`;
}

export function assetHref(key) {
  return "#/asset/" + encodeURIComponent(key);
}

/** Status of an asset for colouring: running, failed, missing, stale, fresh or source. */
export function nodeStatus(n, running) {
  if (running && running.has(n.key)) return "running";
  if (n.isSource) return "source";
  if (n.failed > 0) return "failed";
  if (n.missing > 0 && n.missing === n.partitions) return "missing";
  if (n.notFresh > 0) return "stale";
  return "fresh";
}

export function classBadge(c) {
  return { PHI: "PHI", LIMITED: "LDS", DEIDENTIFIED: "DEID" }[c] || null;
}
