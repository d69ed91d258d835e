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

/**
 * A socket to `/graphql/ws` speaking graphql-transport-ws. In local mode the browser sends
 * the session cookie with the upgrade (same origin); otherwise the pasted token goes in the
 * `connection_init` payload, as docs/api.md says. `subscribe` calls `onNext(data)` for each
 * result and resolves when the server completes the operation; it rejects with an
 * `ApiError` for a GraphQL error (the server refused the operation), and with a
 * `SocketError` when the socket cannot be used (the caller may then poll instead).
 */
export class SocketError extends Error {}

export class Socket {
  constructor(signal) {
    this.ops = new Map(); // id -> {onNext, resolve, reject}
    this.nextId = 1;
    this.ready = new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(`${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/graphql/ws`, "graphql-transport-ws");
      } catch (e) {
        reject(new SocketError(`no websocket: ${e.message}`));
        return;
      }
      this.ws = ws;
      ws.onopen = () => {
        const t = token();
        ws.send(JSON.stringify({ type: "connection_init", payload: t ? { Authorization: "Bearer " + t } : {} }));
      };
      ws.onmessage = (m) => {
        const msg = JSON.parse(m.data);
        const op = msg.id && this.ops.get(msg.id);
        if (msg.type === "connection_ack") resolve();
        else if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
        else if (op && msg.type === "next") {
          const errors = msg.payload.errors;
          if (errors && errors.length) this.end(msg.id, apiError(errors[0]));
          else op.onNext(msg.payload.data);
        } else if (op && msg.type === "error") this.end(msg.id, apiError(msg.payload[0] || { message: "refused" }));
        else if (op && msg.type === "complete") this.end(msg.id, null);
      };
      ws.onclose = (ev) => {
        const e = new SocketError(`the websocket closed (${ev.code})`);
        reject(e);
        for (const id of [...this.ops.keys()]) this.end(id, e);
      };
    });
    signal.addEventListener("abort", () => this.close());
  }

  async subscribe(query, variables, onNext) {
    await this.ready;
    const id = String(this.nextId++);
    return new Promise((resolve, reject) => {
      this.ops.set(id, { onNext, resolve, reject });
      this.ws.send(JSON.stringify({ id, type: "subscribe", payload: { query, variables } }));
    });
  }

  end(id, error) {
    const op = this.ops.get(id);
    if (!op) return;
    this.ops.delete(id);
    if (error) op.reject(error);
    else op.resolve();
  }

  close() {
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}

function apiError(e) {
  return new ApiError(e.message, (e.extensions && e.extensions.code) || "ERROR", 200);
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
