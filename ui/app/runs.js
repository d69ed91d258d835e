// Runs (list with status and asset filters, a run's page with its live log and cancel)
// and backfills (list with progress, a backfill's page with progress and cancel).

import { gql, h, fmtTime, assetHref, Socket, SocketError } from "./api.js";
import { runsTable } from "./asset.js";

const RUN_FIELDS = "id asset partition rangeFirst rangeLast status attempt createdAt startedAt finishedAt";
const ROLE_RANK = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };
const ENDED = new Set(["succeeded", "failed", "canceled", "interrupted"]);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function runsView(root, params, signal) {
  const status = params.get("status") || "";
  const asset = params.get("asset") || "";
  const statusSel = h("select", { id: "runs-status", name: "status" },
    ["", "queued", "running", "succeeded", "failed", "canceled", "interrupted"].map((s) => h("option", { value: s, selected: s === status }, s || "any")));
  const assetIn = h("input", { id: "runs-asset", name: "asset", type: "text", value: asset, placeholder: "asset key" });
  const list = h("div", { id: "runs-list" });
  root.replaceChildren(h("section", { class: "page" }, h("h1", {}, "Runs"),
    h("form", { class: "inline", onsubmit: (ev) => {
      ev.preventDefault();
      const q = new URLSearchParams();
      if (statusSel.value) q.set("status", statusSel.value);
      if (assetIn.value.trim()) q.set("asset", assetIn.value.trim());
      location.hash = "#/runs?" + q;
    } }, h("label", { for: "runs-status" }, "Status"), statusSel, h("label", { for: "runs-asset" }, "Asset"), assetIn, h("button", { type: "submit" }, "Filter")),
    list));
  while (!signal.aborted) {
    try {
      const r = await gql(`query($s: [String!], $a: String) { runs(statuses: $s, asset: $a, first: 100) { items { ${RUN_FIELDS} } } }`,
        { s: status ? [status] : null, a: asset || null });
      if (signal.aborted) return;
      list.replaceChildren(runsTable(r.runs.items, true));
    } catch (e) {
      list.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
    await sleep(3000);
  }
}

export async function runView(root, id, signal) {
  const RUN = `${RUN_FIELDS} error redacted backfillId`;
  const { me, run: first } = await gql(`query($id: String!) { me { role } run(id: $id) { ${RUN} } }`, { id });
  if (signal.aborted) return;
  const canCancel = ROLE_RANK[me.role] >= ROLE_RANK.OPERATOR;
  const info = h("div", { id: "run-info" });
  const notes = h("div", { "aria-live": "polite" });
  const log = h("pre", { id: "run-log", class: "log", tabindex: "0", "aria-label": "Run log" });
  const cancel = canCancel ? h("button", { type: "button", id: "run-cancel", onclick: async () => {
    try { await gql("mutation($id: String!) { cancelRun(id: $id) { id status } }", { id }); } catch (e) { notes.replaceChildren(h("p", { class: "error", role: "alert" }, e.message)); }
  } }, "Cancel run") : null;
  root.replaceChildren(h("section", { class: "page" }, h("h1", {}, "Run ", h("code", {}, id.slice(0, 8))), info, h("div", { class: "actions" }, cancel), notes, h("h2", {}, "Log"), log));

  const showRun = (r) => {
    info.replaceChildren(h("dl", {},
      h("dt", {}, "Asset"), h("dd", {}, h("a", { href: assetHref(r.asset) }, r.asset)),
      h("dt", {}, "Partition"), h("dd", {}, r.partition || (r.rangeFirst ? `${r.rangeFirst} … ${r.rangeLast}` : "—")),
      h("dt", {}, "Status"), h("dd", {}, h("span", { id: "run-status", class: `pill run-${r.status}` }, r.status), ` attempt ${r.attempt}`),
      h("dt", {}, "Created"), h("dd", {}, fmtTime(r.createdAt)),
      h("dt", {}, "Started"), h("dd", {}, fmtTime(r.startedAt)),
      h("dt", {}, "Finished"), h("dd", {}, fmtTime(r.finishedAt)),
      h("dt", {}, "Backfill"), h("dd", {}, r.backfillId ? h("a", { href: `#/backfill/${r.backfillId}` }, r.backfillId.slice(0, 8)) : "—"),
      h("dt", {}, "Error"), h("dd", {}, r.redacted ? h("span", { class: "redacted" }, "redacted: ", r.redacted.replace(/^redacted: /, "")) : r.error || "—")));
    if (cancel) cancel.hidden = ENDED.has(r.status);
  };
  // Lines are appended once each, by sequence number, whichever way they arrive.
  let after = 0;
  const appendLines = (lines) => {
    let text = "";
    for (const l of lines) {
      if (Number(l.seq) <= after) continue;
      after = Number(l.seq);
      text += `${l.stream === "stderr" ? "! " : ""}${l.line}\n`;
    }
    if (text) log.append(text);
  };
  showRun(first);
  if (first.redacted) log.textContent = "Log redacted: PHI details need the phi scope.";

  // Live over the websocket (status changes and log lines as they are written); polling
  // only if the socket cannot be used.
  const socket = new Socket(signal);
  try {
    const streams = [socket.subscribe(`subscription($id: String!) { runStatus(id: $id) { ${RUN} } }`, { id }, (d) => showRun(d.runStatus))];
    if (!first.redacted) {
      streams.push(socket.subscribe("subscription($id: String!, $after: Int64!) { runLogs(id: $id, after: $after) { seq stream line } }",
        { id, after }, (d) => appendLines([d.runLogs])));
    }
    await socket.ready;
    log.dataset.transport = "subscription";
    await Promise.all(streams);
    log.dataset.complete = "true";
    return;
  } catch (e) {
    if (signal.aborted) return;
    if (!(e instanceof SocketError)) throw e;
  } finally {
    socket.close();
  }
  log.dataset.transport = "polling";
  while (!signal.aborted) {
    const r = (await gql(`query($id: String!, $after: Int64!) { run(id: $id) { ${RUN}
      logs(after: $after, first: 500) { nextCursor lines { seq stream line } } } }`, { id, after })).run;
    if (signal.aborted) return;
    showRun(r);
    if (r.logs) appendLines(r.logs.lines);
    if (ENDED.has(r.status) && logComplete(r) && (!r.logs || r.logs.lines.length === 0)) {
      log.dataset.complete = "true";
      return;
    }
    await sleep(1000);
  }
}

/** Whether an ended run's log has all its lines: a command canceled or interrupted while
 * running writes until the launcher kills it, up to 13 s after its status changed (the
 * server's `runLogs` subscription follows it as long). */
function logComplete(r) {
  const stopped = (r.status === "canceled" || r.status === "interrupted") && r.startedAt;
  return !stopped || !r.finishedAt || Date.now() - Date.parse(r.finishedAt) > 13000;
}

function progress(b) {
  const total = Number(b.requested) || 0;
  const done = Number(b.done), failed = Number(b.failed);
  return h("div", { class: "progress-wrap" },
    h("progress", { max: String(total || 1), value: String(done + failed), "aria-label": `Backfill progress: ${done} of ${total} done, ${failed} failed` }),
    h("span", { class: "progress-text" }, `${done}/${total} done` + (failed ? `, ${failed} failed` : "") + (Number(b.inFlight) ? `, ${b.inFlight} in flight` : "")));
}

const BF = "id selection status createdBy createdAt requested done failed inFlight waitingFor { asset upstream reason partitions ranges }";

const WAIT_REASONS = { RUNNING: "queued or running", FAILED: "failed, no retries left", RETRYING: "failed, retry due later",
  BACKFILL: "still to be rebuilt by a backfill", MISSING: "missing, and nothing builds them", STALE: "stale, and nothing rebuilds them" };

/** What a backfill's waiting partitions wait for at its root: inputs nothing here builds
 * (not the ones it rebuilds itself, nor runs in flight). */
function waits(b) {
  const roots = [...new Set(b.waitingFor.filter((w) => w.reason !== "BACKFILL" && w.reason !== "RUNNING")
    .map((w) => `${w.upstream} (${w.partitions} ${w.reason.toLowerCase()})`))];
  return roots.length ? h("div", { class: "muted bf-waits" }, `Waits for ${roots.join(", ")}`) : null;
}

function keyRanges(ranges) {
  return ranges.map((r) => r[0] === r[1] ? r[0] : `${r[0]} … ${r[1]}`).join(", ");
}

export async function backfillsView(root, signal) {
  const list = h("div", { id: "backfills-list" });
  root.replaceChildren(h("section", { class: "page" }, h("h1", {}, "Backfills"), list));
  while (!signal.aborted) {
    try {
      const r = await gql(`{ backfills(first: 100) { ${BF} } }`);
      if (signal.aborted) return;
      list.replaceChildren(r.backfills.length ? h("table", {},
        h("thead", {}, h("tr", {}, ["Backfill", "Selection", "Status", "Progress", "By", "Created"].map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, r.backfills.map((b) => h("tr", {},
          h("td", {}, h("a", { href: `#/backfill/${b.id}` }, b.id.slice(0, 8))), h("td", {}, b.selection),
          h("td", {}, h("span", { class: `pill bf-${b.status}` }, b.status)), h("td", {}, progress(b), waits(b)),
          h("td", {}, b.createdBy), h("td", {}, fmtTime(b.createdAt)))))) : h("p", { class: "muted" }, "No backfills yet."));
    } catch (e) {
      list.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
    await sleep(3000);
  }
}

export async function backfillView(root, id, signal) {
  const { me } = await gql("{ me { role } }");
  const canCancel = ROLE_RANK[me.role] >= ROLE_RANK.OPERATOR;
  const body = h("div", { id: "backfill-info" });
  const runs = h("div", {});
  const cancel = canCancel ? h("button", { type: "button", id: "backfill-cancel", onclick: async () => {
    try { await gql("mutation($id: String!) { cancelBackfill(id: $id) { id } }", { id }); } catch (e) { body.append(h("p", { class: "error", role: "alert" }, e.message)); }
  } }, "Cancel backfill") : null;
  root.replaceChildren(h("section", { class: "page" }, h("h1", {}, "Backfill ", h("code", {}, id.slice(0, 8))), body, cancel, h("h2", {}, "Runs"), runs));
  while (!signal.aborted) {
    const b = (await gql(`query($id: String!) { backfill(id: $id) { ${BF} targets { asset ranges } runs(first: 100) { items { ${RUN_FIELDS} } } } }`, { id })).backfill;
    if (signal.aborted) return;
    body.replaceChildren(h("p", {}, h("span", { id: "backfill-status", class: `pill bf-${b.status}` }, b.status), ` ${b.selection}, by ${b.createdBy}, ${fmtTime(b.createdAt)}`),
      h("div", { id: "backfill-progress", dataset: { done: String(b.done), requested: String(b.requested), failed: String(b.failed) } }, progress(b)),
      h("ul", {}, b.targets.map((t) => h("li", {}, h("a", { href: assetHref(t.asset) }, t.asset), ": ", keyRanges(t.ranges)))),
      b.waitingFor.length ? h("div", { id: "backfill-waiting" }, h("h2", {}, "Waiting for"),
        h("ul", {}, b.waitingFor.map((w) => h("li", {}, h("a", { href: assetHref(w.asset) }, w.asset), " waits for ",
          h("a", { href: assetHref(w.upstream) }, w.upstream), `: ${w.partitions} partition(s) ${WAIT_REASONS[w.reason] || w.reason}`,
          w.ranges.length > 0 && w.ranges[0][0] !== "" ? ` (${keyRanges(w.ranges)})` : "")))) : null);
    runs.replaceChildren(runsTable(b.runs.items, true));
    if (cancel) cancel.hidden = b.status === "completed" || b.status === "canceled";
    await sleep(1500);
  }
}
