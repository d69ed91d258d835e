// An asset's page: definition, classification, freshness (and its SLA override), the
// partition health bar (drawn from ranges, one request whatever the partition count),
// staleness reasons for a chosen partition, the latest materialization, history, runs,
// and launching a backfill.

import { gql, h, fmtTime, fmtDuration, assetHref, classBadge } from "./api.js";
import { healthBar } from "./health.js";

const ASSET = `query($key: String!) { me { role phi }
  asset(key: $key) { key group description owners tags { key value } kinds isSource codeVersion
    automation pool storage definedAt dependencies
    classification { effective declared source inheritedFrom deidentificationReason }
    partitions { name kind description sensitiveKeys } partitionDates { earliest latest timezone }
    freshness { status since nextChange detail policy { maxLagSeconds warnLagSeconds deadlineCron
      deadlineTimezone deadlineLowerBoundSeconds overridden overrideSetBy overrideSetAt } }
    latestMaterialization { eventId at partition dataVersion codeVersion runId metadata redacted }
    partitionHealth(maxRanges: 2000) { total fresh missing codeChanged upstreamChanged upstreamStale failed truncated
      ranges { status firstKey lastKey count } }
    upstream(depth: 1) { key } downstream(depth: 1) { key }
    history(first: 15) { items { at kind partition dataVersion codeVersion runId redacted } }
    runs(first: 10) { items { id partition rangeFirst rangeLast status attempt createdAt finishedAt } } } }`;

const STALENESS = `query($key: String!, $p: String) { asset(key: $key) { staleness(partition: $p) {
  reason upstream upstreamPartition upstreamReasons builtWithCode currentCode failures retriesLeft lastFailureAt } } }`;

const ROLE_RANK = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };

export async function assetView(root, key, signal) {
  const started = performance.now();
  const data = await gql(ASSET, { key });
  if (signal.aborted) return;
  const a = data.asset;
  const me = data.me;
  const can = (role) => ROLE_RANK[me.role] >= ROLE_RANK[role];
  document.title = `${a.key} · Cairn`;

  const stalenessBox = h("div", { id: "staleness", "aria-live": "polite" });
  const partitionInput = h("input", { id: "staleness-partition", type: "text", placeholder: a.partitions ? "partition key" : "(unpartitioned)", disabled: !a.partitions });
  const backfill = can("OPERATOR") && !a.isSource ? backfillForm(a) : null;
  const showStaleness = async (p) => {
    if (p !== undefined) partitionInput.value = p;
    stalenessBox.replaceChildren(h("p", { class: "muted" }, "Loading…"));
    try {
      const r = await gql(STALENESS, { key: a.key, p: a.partitions ? partitionInput.value || null : null });
      stalenessBox.replaceChildren(stalenessList(r.asset.staleness));
    } catch (e) {
      stalenessBox.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };

  const health = a.partitionHealth;
  const bar = healthBar(health, {
    onPick: (first, last) => {
      showStaleness(first);
      if (backfill) backfill.setRange(first, last);
    },
  });

  root.replaceChildren(h("article", { class: "asset-page" },
    h("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, h("a", { href: "#/" }, "Lineage"), " / ", a.group, " / "),
    h("header", { class: "asset-head" },
      h("h1", {}, a.key),
      classBadge(a.classification.effective) ? h("span", { class: "badge", title: a.classification.effective }, classBadge(a.classification.effective)) : null,
      h("a", { class: "button", href: `#/?focus=${encodeURIComponent(a.key)}&depth=2` }, "Show in lineage")),
    a.description ? h("p", { class: "description" }, a.description) : null,
    h("section", { class: "card wide", "aria-labelledby": "health-h" },
      h("h2", { id: "health-h" }, "Partition health"),
      healthSummary(health),
      bar,
      a.partitions ? h("p", { class: "muted" }, "Click a range on the bar to see why it is stale" + (backfill ? " and to backfill it." : ".")) : null),
    h("section", { class: "card wide", "aria-labelledby": "stale-h" },
      h("h2", { id: "stale-h" }, "Why is it stale?"),
      h("form", { class: "inline", onsubmit: (ev) => { ev.preventDefault(); showStaleness(); } },
        h("label", { for: "staleness-partition" }, "Partition"), partitionInput,
        h("button", { type: "submit" }, "Explain")),
      stalenessBox),
    backfill ? backfill.el : null,
    h("div", { class: "cards" },
      card("Definition", dl([
        ["Owners", a.owners.join(", ") || "—"],
        ["Kinds", a.kinds.join(", ") || "—"],
        ["Tags", a.tags.length ? a.tags.map((t) => h("span", { class: "tag" }, `${t.key}=${t.value}`)) : "—"],
        ["Code version", h("code", {}, a.codeVersion.slice(0, 16))],
        ["Automation", a.automation],
        ["Partitions", a.partitions ? `${a.partitions.name} (${a.partitions.description})` : "none"],
        ["Pool", a.pool || "—"], ["Storage", a.storage || "—"],
        ["Defined at", h("code", {}, a.definedAt)],
        ["Upstream", links(a.upstream)], ["Downstream", links(a.downstream)],
      ])),
      card("Classification", dl([
        ["Effective", h("strong", { id: "class-effective" }, a.classification.effective.toLowerCase())],
        ["Declared", a.classification.declared ? a.classification.declared.toLowerCase() : "not declared"],
        ["Where it comes from", a.classification.source + (a.classification.inheritedFrom ? " " : ""),
          a.classification.inheritedFrom ? h("a", { href: assetHref(a.classification.inheritedFrom) }, a.classification.inheritedFrom) : null],
        a.classification.deidentificationReason ? ["De-identified because", a.classification.deidentificationReason] : null,
      ])),
      freshnessCard(a, can("ADMIN"), () => assetView(root, key, signal)),
    ),
    h("section", { class: "card wide", "aria-labelledby": "latest-h" },
      h("h2", { id: "latest-h" }, "Latest materialization"),
      latest(a.latestMaterialization)),
    h("div", { class: "cards two" },
      h("section", { class: "card", "aria-labelledby": "hist-h" }, h("h2", { id: "hist-h" }, "History"), historyTable(a.history.items)),
      h("section", { class: "card", "aria-labelledby": "runs-h" }, h("h2", { id: "runs-h" }, "Recent runs"), runsTable(a.runs.items),
        h("p", {}, h("a", { href: `#/runs?asset=${encodeURIComponent(a.key)}` }, "All runs of this asset")))),
  ));
  const newest = health.ranges.length && !health.truncated ? health.ranges[health.ranges.length - 1].lastKey : "";
  showStaleness(a.partitions ? newest : undefined);
  requestAnimationFrame(() => {
    document.body.dataset.assetRenderedMs = String(Math.round(performance.now() - started));
    root.querySelector(".asset-page").dataset.ready = "true";
  });
}

function card(title, ...body) {
  const id = "c-" + title.toLowerCase().replace(/\W+/g, "-");
  return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), ...body);
}

function dl(rows) {
  return h("dl", {}, rows.filter(Boolean).map(([k, ...v]) => [h("dt", {}, k), h("dd", {}, ...v)]));
}

function links(list) {
  if (!list.length) return "—";
  return list.map((u, i) => [i ? ", " : "", h("a", { href: assetHref(u.key) }, u.key)]);
}

function healthSummary(hl) {
  const items = [["fresh", hl.fresh], ["missing", hl.missing], ["failed", hl.failed],
    ["code changed", hl.codeChanged], ["upstream changed", hl.upstreamChanged], ["upstream stale", hl.upstreamStale]];
  return h("p", { id: "health-summary" }, `${hl.total} partition${hl.total === 1 ? "" : "s"}: `,
    items.filter(([, n]) => n > 0).map(([label, n], i) => [i ? ", " : "", h("span", { class: `count-${label.replace(/ /g, "-")}` }, `${n} ${label}`)]));
}

function freshnessCard(a, admin, reload) {
  const f = a.freshness;
  const body = [];
  if (!f) body.push(h("p", { id: "freshness-status" }, "No freshness SLA."));
  else {
    const p = f.policy;
    body.push(
      h("p", {}, h("span", { id: "freshness-status", class: `pill sla-${f.status}` }, f.status), " ", f.detail),
      dl([
        ["Since", fmtTime(f.since)],
        ["Next change", fmtTime(f.nextChange)],
        ["Max lag", fmtDuration(p.maxLagSeconds)], ["Warn lag", fmtDuration(p.warnLagSeconds)],
        ["Deadline", p.deadlineCron ? `${p.deadlineCron} (${p.deadlineTimezone || "UTC"}), built within ${fmtDuration(p.deadlineLowerBoundSeconds)}` : "—"],
        ["Policy", p.overridden ? `override set by ${p.overrideSetBy} ${fmtTime(p.overrideSetAt)}` : "as defined"],
      ]));
  }
  if (admin) body.push(h("details", { id: "sla-details" }, h("summary", {}, "Edit the SLA"), slaForm(a, reload)));
  return card("Freshness", ...body);
}

function slaForm(a, reload) {
  const p = (a.freshness && a.freshness.policy) || {};
  const field = (id, label, value, hint) => [
    h("label", { for: id }, label),
    h("input", { id, name: id, type: "text", value: value || "", placeholder: hint, "aria-describedby": "sla-error" })];
  const error = h("p", { id: "sla-error", class: "error", role: "alert", "aria-live": "assertive" });
  const form = h("form", { class: "sla-form", "aria-label": "Freshness SLA override",
    onsubmit: async (ev) => {
      ev.preventDefault();
      const v = (n) => form.elements[n].value.trim() || null;
      error.textContent = "";
      try {
        await gql(`mutation($a: String!, $m: String, $w: String, $c: String, $t: String, $b: String) {
          setFreshnessSla(asset: $a, maxLag: $m, warnLag: $w, deadlineCron: $c, deadlineTimezone: $t, deadlineLowerBound: $b) { key } }`,
        { a: a.key, m: v("sla-max"), w: v("sla-warn"), c: v("sla-cron"), t: v("sla-tz"), b: v("sla-bound") });
        reload();
      } catch (e) {
        error.textContent = e.message;
      }
    } },
    h("fieldset", {}, h("legend", {}, "Override the SLA"),
      h("div", { class: "grid2" },
        field("sla-max", "Max lag", p.maxLagSeconds != null ? fmtDuration(p.maxLagSeconds) : "", "e.g. 20h"),
        field("sla-warn", "Warn lag", p.warnLagSeconds != null ? fmtDuration(p.warnLagSeconds) : "", "e.g. 12h"),
        field("sla-cron", "Deadline (cron)", p.deadlineCron, "0 7 * * *"),
        field("sla-tz", "Deadline timezone", p.deadlineTimezone, "America/Chicago"),
        field("sla-bound", "Built within", p.deadlineLowerBoundSeconds != null ? fmtDuration(p.deadlineLowerBoundSeconds) : "", "e.g. 3h")),
      error,
      h("div", { class: "actions" },
        h("button", { type: "submit", id: "sla-save" }, "Save override"),
        p.overridden ? h("button", { type: "button", id: "sla-clear", onclick: async () => {
          error.textContent = "";
          try {
            await gql(`mutation($a: String!) { clearFreshnessSla(asset: $a) { key } }`, { a: a.key });
            reload();
          } catch (e) { error.textContent = e.message; }
        } }, "Clear override (back to the definition)") : null)));
  return form;
}

function stalenessList(reasons) {
  if (!reasons.length) return h("p", { class: "ok" }, "Fresh: built from the current code and inputs.");
  return h("ul", { class: "reasons" }, reasons.map((r) => {
    const bits = [h("strong", {}, r.reason.replace(/_/g, " "))];
    if (r.upstream) bits.push(": ", h("a", { href: assetHref(r.upstream) }, r.upstream), r.upstreamPartition ? ` [${r.upstreamPartition}]` : "");
    if (r.upstreamReasons && r.upstreamReasons.length) bits.push(` (${r.upstreamReasons.join(", ").replace(/_/g, " ")})`);
    if (r.builtWithCode) bits.push(` built with ${r.builtWithCode.slice(0, 12)}, now ${(r.currentCode || "").slice(0, 12)}`);
    if (r.failures) bits.push(` ${r.failures} failure(s), ${r.retriesLeft ?? 0} retries left, last ${fmtTime(r.lastFailureAt)}`);
    return h("li", {}, bits);
  }));
}

function latest(m) {
  if (!m) return h("p", { class: "muted" }, "Never materialized.");
  const meta = m.redacted
    ? h("p", { class: "redacted", id: "metadata-redacted" }, "Metadata ", h("strong", {}, "redacted"), `: ${m.redacted.replace(/^redacted: /, "")}`)
    : m.metadata && Object.keys(m.metadata).length
      ? h("table", { id: "metadata" }, h("caption", { class: "visually-hidden" }, "Metadata"),
        h("tbody", {}, Object.entries(m.metadata).map(([k, v]) => h("tr", {}, h("th", { scope: "row" }, k), h("td", {}, typeof v === "object" ? JSON.stringify(v) : String(v))))))
      : h("p", { class: "muted" }, "No metadata.");
  return h("div", {}, dl([
    ["At", fmtTime(m.at)], ["Partition", m.partition || "—"],
    ["Data version", h("code", {}, (m.dataVersion || "—").slice(0, 24))],
    ["Code version", h("code", {}, (m.codeVersion || "—").slice(0, 16))],
    ["Run", m.runId ? h("a", { href: `#/run/${encodeURIComponent(m.runId)}` }, m.runId.slice(0, 8)) : "—"],
  ]), meta);
}

function historyTable(items) {
  if (!items.length) return h("p", { class: "muted" }, "No materializations yet.");
  return h("table", {}, h("thead", {}, h("tr", {}, ["When", "Partition", "Data version", "Run"].map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((m) => h("tr", {}, h("td", {}, fmtTime(m.at)), h("td", {}, m.partition || "—"),
      h("td", {}, h("code", {}, (m.dataVersion || "—").slice(0, 12))),
      h("td", {}, m.runId ? h("a", { href: `#/run/${encodeURIComponent(m.runId)}` }, m.runId.slice(0, 8)) : "—")))));
}

export function runsTable(items, withAsset = false) {
  if (!items.length) return h("p", { class: "muted" }, "No runs.");
  return h("table", { class: "runs" }, h("thead", {}, h("tr", {}, [withAsset ? "Asset" : null, "Run", "Partition", "Status", "Attempt", "Created", "Finished"].filter(Boolean).map((c) => h("th", { scope: "col" }, c)))),
    h("tbody", {}, items.map((r) => h("tr", {},
      withAsset ? h("td", {}, h("a", { href: assetHref(r.asset) }, r.asset)) : null,
      h("td", {}, h("a", { href: `#/run/${encodeURIComponent(r.id)}` }, r.id.slice(0, 8))),
      h("td", {}, r.partition || (r.rangeFirst ? `${r.rangeFirst} … ${r.rangeLast}` : "—")),
      h("td", {}, h("span", { class: `pill run-${r.status}` }, r.status)),
      h("td", {}, String(r.attempt)), h("td", {}, fmtTime(r.createdAt)), h("td", {}, fmtTime(r.finishedAt))))));
}

function backfillForm(a) {
  const from = h("input", { id: "bf-from", type: "text", placeholder: a.partitions ? "first key, e.g. 2026-11-01" : "", disabled: !a.partitions });
  const to = h("input", { id: "bf-to", type: "text", placeholder: a.partitions ? "last key" : "", disabled: !a.partitions });
  const downstream = h("input", { id: "bf-downstream", type: "checkbox" });
  const out = h("div", { id: "bf-preview", "aria-live": "polite" });
  const launch = h("button", { type: "button", id: "bf-launch", disabled: true }, "Launch backfill");
  let previewed = null;
  const args = () => ({ s: a.key, f: from.value.trim() || null, t: to.value.trim() || null, d: downstream.checked });
  const invalidate = () => { previewed = null; launch.disabled = true; };
  for (const el of [from, to, downstream]) el.addEventListener("input", invalidate);
  const dates = a.partitionDates ? dateRange(a, (first, last) => { from.value = first; to.value = last; invalidate(); }) : null;
  const MUT = `mutation($s: String!, $f: String, $t: String, $d: Boolean!, $dry: Boolean!) {
    launchBackfill(selection: $s, from: $f, to: $t, downstream: $d, dryRun: $dry) { partitions assets backfill { id } } }`;
  const preview = async (ev) => {
    ev.preventDefault();
    out.replaceChildren(h("p", { class: "muted" }, "Counting…"));
    try {
      const r = (await gql(MUT, { ...args(), dry: true })).launchBackfill;
      previewed = JSON.stringify(args());
      out.replaceChildren(h("p", { id: "bf-count" }, `${r.partitions} partition run${r.partitions === 1 ? "" : "s"} across ${r.assets.length} asset${r.assets.length === 1 ? "" : "s"}: `, r.assets.join(", ")));
      launch.disabled = false;
    } catch (e) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  };
  launch.addEventListener("click", async () => {
    if (previewed !== JSON.stringify(args())) return;
    launch.disabled = true;
    try {
      const r = (await gql(MUT, { ...args(), dry: false })).launchBackfill;
      location.hash = `#/backfill/${encodeURIComponent(r.backfill.id)}`;
    } catch (e) {
      out.replaceChildren(h("p", { class: "error", role: "alert" }, e.message));
    }
  });
  const el = h("section", { class: "card wide", "aria-labelledby": "bf-h", id: "backfill" },
    h("h2", { id: "bf-h" }, "Backfill"),
    dates ? dates.el : null,
    h("form", { class: "inline", onsubmit: preview },
      h("label", { for: "bf-from" }, "From"), from,
      h("label", { for: "bf-to" }, "To"), to,
      h("label", { class: "check" }, downstream, " with downstream"),
      h("button", { type: "submit", id: "bf-preview-button" }, "Count runs"), launch),
    out);
  return { el, setRange(f, t) { from.value = f; to.value = t; invalidate(); if (dates) dates.clear(); } };
}

/** Choosing a backfill's range by days: checked against the days the partitions cover
 * (the inputs' bounds; errors inline, on the field), then turned into the range of keys
 * by the server (`partitionsBetween`), which `onRange` receives. */
function dateRange(a, onRange) {
  const { earliest, latest, timezone } = a.partitionDates;
  const input = (id) => h("input", { id, type: "date", min: earliest, max: latest, "aria-describedby": "bf-dates-error bf-dates-note" });
  const from = input("bf-date-from"), to = input("bf-date-to");
  const error = h("p", { id: "bf-dates-error", class: "error field-error", "aria-live": "assertive" });
  const note = h("p", { id: "bf-dates-note", class: "muted field-note" }, `Partitions cover ${earliest} to ${latest} (${timezone}).`);
  let asked = 0;
  const fail = (el, message) => {
    for (const i of [from, to]) i.removeAttribute("aria-invalid");
    if (el) el.setAttribute("aria-invalid", "true");
    error.textContent = message;
  };
  const check = async () => {
    const [f, t] = [from.value, to.value];
    fail(null, "");
    for (const [el, name, v] of [[from, "from", f], [to, "to", t]]) {
      if (el.validity.badInput) return fail(el, `${name}: not a date`);
      if (v && v < earliest) return fail(el, `${name}: ${v} is before the first partition (${earliest})`);
      if (v && v > latest) return fail(el, `${name}: ${v} is after the newest partition (${latest})`);
    }
    if (!f || !t) return;
    if (f > t) return fail(to, `the range is reversed: ${f} is after ${t}`);
    const mine = ++asked;
    try {
      const r = (await gql(`query($k: String!, $f: String!, $t: String!) { asset(key: $k) { partitionsBetween(from: $f, to: $t) { firstKey lastKey count } } }`,
        { k: a.key, f, t })).asset.partitionsBetween;
      if (mine !== asked) return;
      note.textContent = `${r.count} partition${r.count === 1 ? "" : "s"}: ${r.firstKey} … ${r.lastKey}`;
      onRange(r.firstKey, r.lastKey);
    } catch (e) {
      if (mine === asked) fail(/^to:/.test(e.message) ? to : from, e.message);
    }
  };
  for (const el of [from, to]) el.addEventListener("change", check);
  const el = h("fieldset", { class: "dates" }, h("legend", {}, "By dates"),
    h("div", { class: "inline" },
      h("label", { for: "bf-date-from" }, "From day"), from,
      h("label", { for: "bf-date-to" }, "To day"), to),
    error, note);
  return { el, clear() { from.value = ""; to.value = ""; fail(null, ""); } };
}
