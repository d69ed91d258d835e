// The lineage graph: coordinates come from the server (`graphLayout`, computed in Rust);
// this draws them as SVG, pans and zooms, searches, selects, focuses, and keeps the
// statuses live by polling `logPosition` (cheap) and re-reading `graph` when it moves.

import { gql, h, nodeStatus, classBadge, assetHref } from "./api.js";

const LAYOUT = `{ graphLayout { version nodeWidth nodeHeight width height crossings
  nodes { key group x y } groups { name x y width height } edges { from to } } }`;
const STATUS = `{ logPosition graph { nodes { key classification isSource partitioned
  notFresh partitions missing failed staleReasons freshness } }
  runs(statuses: ["queued", "running"], first: 500) { items { asset } } }`;
const POLL = `{ logPosition runs(statuses: ["queued", "running"], first: 500) { items { asset } } }`;

export const STATUSES = [
  ["fresh", "Fresh: built from current code and inputs"],
  ["stale", "Stale: inputs or code changed (reason shown)"],
  ["missing", "Missing: never materialized"],
  ["failed", "Failed: latest attempt failed"],
  ["running", "Running or queued"],
  ["source", "Source: data from outside"],
];

/**
 * A node's name, shortened with "…" to what fits beside its badge (or in the whole box
 * without one); the full key is in the node's title. Measured on a canvas in the names'
 * font (`.node .name`: 13 px, semibold), which lays nothing out: measuring the SVG text
 * would lay out every label before the first paint. The box is 220 wide, the name starts
 * at 14 and a badge at 176.
 */
const NAME_ROOM = { badged: 176 - 14 - 4, plain: 220 - 14 - 8 };
let nameFont = null;
function fitName(name, badged) {
  if (!nameFont) {
    nameFont = document.createElement("canvas").getContext("2d");
    nameFont.font = `600 13px ${getComputedStyle(document.body).fontFamily}`;
  }
  const room = badged ? NAME_ROOM.badged : NAME_ROOM.plain;
  if (nameFont.measureText(name).width <= room) return name;
  let fits = 0;
  let over = name.length;
  while (over - fits > 1) {
    const mid = (fits + over) >> 1;
    if (nameFont.measureText(name.slice(0, mid) + "…").width <= room) fits = mid;
    else over = mid;
  }
  return name.slice(0, fits) + "…";
}

/** The zoom below which labels are not drawn (13 px names under about 4 px). */
const FAR = 0.3;

const ARROWS = { ArrowRight: "right", ArrowLeft: "left", ArrowUp: "up", ArrowDown: "down" };

const SVGNS = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const el = document.createElementNS(SVGNS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
};

let state = null; // survives navigation between views, so coming back is instant

export async function graphView(root, params, signal) {
  if (!state) state = { view: null, selected: null, focus: null, depth: 2, search: "" };
  if (params.get("focus")) {
    state.focus = params.get("focus");
    state.depth = params.get("depth") === "all" ? "all" : Number(params.get("depth") || 2);
    state.selected = state.focus;
  }
  const started = performance.now();
  const [{ graphLayout: layout }, status] = await Promise.all([gql(LAYOUT), gql(STATUS)]);
  if (signal.aborted) return;
  const drawing = performance.now();
  const g = new GraphView(root, layout, signal);
  g.applyStatus(status);
  g.fit();
  if (state.view) g.setView(state.view);
  if (state.selected) g.select(state.selected, false);
  if (state.search) g.search(state.search);
  if (state.focus) g.applyFocus();
  // Two frames: the first is the one the graph is painted in; the second starts after it.
  requestAnimationFrame(() => requestAnimationFrame(() => {
    document.body.dataset.graphRenderedMs = String(Math.round(performance.now() - started));
    document.body.dataset.graphDrawMs = String(Math.round(performance.now() - drawing));
    root.querySelector(".graph").dataset.ready = "true";
  }));
  g.poll(status.logPosition);
}

class GraphView {
  constructor(root, layout, signal) {
    this.layout = layout;
    this.signal = signal;
    this.nodes = new Map(); // key -> {el, layout, status}
    this.ups = new Map();
    this.downs = new Map();
    for (const n of layout.nodes) {
      this.ups.set(n.key, []);
      this.downs.set(n.key, []);
    }
    for (const e of layout.edges) {
      this.ups.get(e.to).push(e.from);
      this.downs.get(e.from).push(e.to);
    }

    const searchInput = h("input", {
      type: "search", id: "graph-search", placeholder: "Search assets…",
      autocomplete: "off", "aria-controls": "search-results",
      oninput: (ev) => this.search(ev.target.value),
      onkeydown: (ev) => {
        if (ev.key === "Enter") {
          const first = this.matches && this.matches[0];
          if (first) { this.select(first, true); }
        } else if (ev.key === "ArrowDown") {
          const button = this.results.querySelector("button");
          if (button) { ev.preventDefault(); button.focus(); }
        } else if (ev.key === "Escape") {
          ev.target.value = ""; this.search("");
        }
      },
    });
    this.results = h("ul", { id: "search-results", class: "search-results", "aria-label": "Matching assets", "aria-live": "polite",
      onkeydown: (ev) => {
        const buttons = [...this.results.querySelectorAll("button")];
        const i = buttons.indexOf(document.activeElement);
        if (i < 0 || (ev.key !== "ArrowDown" && ev.key !== "ArrowUp")) return;
        ev.preventDefault();
        if (ev.key === "ArrowDown") (buttons[i + 1] || buttons[i]).focus();
        else if (i === 0) searchInput.focus();
        else buttons[i - 1].focus();
      } });
    this.depthSelect = h("select", { id: "focus-depth", onchange: () => this.changeDepth() },
      ["1", "2", "3", "all"].map((d) => h("option", { value: d, selected: String(state.depth) === d }, d === "all" ? "all" : `${d} hop${d === "1" ? "" : "s"}`)));
    this.panel = h("aside", { class: "panel", id: "selection", "aria-live": "polite" },
      h("p", { class: "muted" }, "Select an asset to see its status; double-click or press Enter to open it."));
    const toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Graph" },
      h("label", { for: "graph-search", class: "visually-hidden" }, "Search assets"),
      searchInput,
      h("button", { type: "button", onclick: () => this.zoomBy(1.25), "aria-label": "Zoom in" }, "+"),
      h("button", { type: "button", onclick: () => this.zoomBy(0.8), "aria-label": "Zoom out" }, "−"),
      h("button", { type: "button", onclick: () => this.fit() }, "Fit"),
      h("label", { for: "focus-depth" }, "Focus depth"),
      this.depthSelect,
      this.focusButton = h("button", { type: "button", id: "focus-button", onclick: () => this.toggleFocus(), disabled: true }, "Focus"),
      h("span", { class: "muted count", id: "graph-count" }, `${layout.nodes.length} assets`),
    );

    // The SVG is drawn once at its full size on a plane that pan and zoom move with a CSS
    // transform: the compositor moves the rasterized plane (fast at thousands of assets),
    // and the plane is rasterized again at the new scale once the movement stops.
    this.svg = svg("svg", { class: "graph-svg", width: layout.width, height: layout.height });
    this.viewport = svg("g", { class: "viewport" });
    this.svg.append(this.viewport);
    this.plane = h("div", { class: "plane" });
    this.plane.append(this.svg);
    // Far out (labels under about 4 px), the labels are not drawn, nor laid out: at the
    // first view of a large graph that is most of the browser's work.
    this.surface = h("div", { class: "graph far", role: "application", tabindex: "0",
      "aria-label": `Lineage graph of ${layout.nodes.length} assets. Arrow keys pan, plus and minus zoom, Tab moves between assets.` }, this.plane);
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "6", markerHeight: "6", orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
    defs.append(marker);
    this.svg.append(defs);
    this.draw();

    const legend = h("section", { class: "legend", "aria-label": "Legend" },
      h("h2", {}, "Legend"),
      h("ul", {}, STATUSES.map(([s, label]) => h("li", {}, h("span", { class: `swatch status-${s}` }), label))),
      h("ul", {}, [["PHI", "protected health information"], ["LDS", "limited data set"], ["DEID", "de-identified"]]
        .map(([b, label]) => h("li", {}, h("span", { class: "badge" }, b), label))),
      h("p", { class: "muted" }, "A red outline: the freshness SLA is breached (orange: warning)."));

    root.replaceChildren(h("div", { class: "graph-page" },
      toolbar,
      h("div", { class: "graph-body" },
        h("div", { class: "graph-wrap" }, this.surface, this.results),
        h("div", { class: "side" }, this.panel, legend))));
    this.bindPanZoom();
  }

  draw() {
    const { nodeWidth: W, nodeHeight: H } = this.layout;
    const groups = svg("g", { class: "groups" });
    for (const gr of this.layout.groups) {
      const g = svg("g", { class: "group" });
      g.append(svg("rect", { x: gr.x, y: gr.y, width: gr.width, height: gr.height, rx: 8 }));
      const t = svg("text", { x: gr.x + 10, y: gr.y + 17 });
      t.textContent = gr.name;
      g.append(t);
      groups.append(g);
    }
    const pos = new Map(this.layout.nodes.map((n) => [n.key, n]));
    const edges = svg("g", { class: "edges" });
    this.edgeEls = [];
    for (const e of this.layout.edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      const p = svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)" });
      p.dataset.from = e.from;
      p.dataset.to = e.to;
      edges.append(p);
      this.edgeEls.push(p);
    }
    const nodes = svg("g", { class: "nodes" });
    for (const n of this.layout.nodes) {
      // One node is in the Tab order at a time (a roving tabindex): Tab reaches the graph's
      // nodes once, arrow keys move between them, Tab again leaves them.
      const g = svg("g", { class: "node", transform: `translate(${n.x},${n.y})`, tabindex: "-1", role: "button" });
      g.dataset.key = n.key;
      g.append(svg("rect", { width: W, height: H, rx: 6, class: "box" }));
      g.append(svg("rect", { width: 6, height: H, rx: 3, class: "stripe" }));
      const name = svg("text", { x: 14, y: 19, class: "name" });
      const short = n.key.slice(n.key.indexOf("/") + 1 || 0);
      name.textContent = fitName(short, false);
      const title = svg("title");
      title.textContent = n.key;
      const status = svg("text", { x: 14, y: 37, class: "status" });
      g.append(title, name, status);
      nodes.append(g);
      this.nodes.set(n.key, { el: g, layout: n, statusEl: status, nameEl: name, shortName: short, data: null });
    }
    nodes.addEventListener("click", (ev) => {
      const g = ev.target.closest(".node");
      if (g) this.select(g.dataset.key, false);
    });
    nodes.addEventListener("dblclick", (ev) => {
      const g = ev.target.closest(".node");
      if (g) location.hash = assetHref(g.dataset.key);
    });
    nodes.addEventListener("keydown", (ev) => {
      const g = ev.target.closest(".node");
      if (!g) return;
      const key = g.dataset.key;
      if (ev.key === "Enter") location.hash = assetHref(key);
      else if (ev.key === " ") { ev.preventDefault(); this.select(key, false); }
      else if (ARROWS[ev.key]) {
        ev.preventDefault();
        ev.stopPropagation();
        const to = this.neighbour(key, ARROWS[ev.key]);
        if (to) { this.moveFocus(to); this.select(to, false); }
      }
    });
    nodes.addEventListener("focusin", (ev) => {
      const g = ev.target.closest(".node");
      if (g) { this.rove(g.dataset.key); this.ensureVisible(this.nodes.get(g.dataset.key).layout); }
    });
    this.viewport.append(groups, edges, nodes);
    // The node in the Tab order: the top-left one until another is focused or selected.
    const first = [...this.layout.nodes].sort((a, b) => a.x - b.x || a.y - b.y)[0];
    if (first) this.rove(first.key);
  }

  applyStatus(status) {
    const running = new Set(status.runs.items.map((r) => r.asset));
    this.running = running;
    for (const n of status.graph.nodes) {
      const entry = this.nodes.get(n.key);
      if (!entry) continue;
      entry.data = n;
      const s = nodeStatus(n, running);
      entry.status = s;
      const g = entry.el;
      for (const cls of [...g.classList]) if (cls.startsWith("status-") || cls.startsWith("outline-")) g.classList.remove(cls);
      g.classList.add(`status-${s}`);
      if (n.freshness === "breach" || n.freshness === "warn") g.classList.add(`outline-${n.freshness}`);
      g.dataset.status = s;
      let text = s;
      if (s === "stale" && n.staleReasons.length) text = "stale: " + n.staleReasons[0].replace(/_/g, " ");
      if (n.partitioned && s !== "running" && s !== "source") text += ` · ${n.partitions - n.notFresh}/${n.partitions}`;
      entry.statusEl.textContent = text;
      const label = `${n.key}: ${text}` + (n.freshness ? `, SLA ${n.freshness}` : "") + (classBadge(n.classification) ? `, ${n.classification}` : "");
      g.setAttribute("aria-label", label);
      const old = g.querySelector(".badge-g");
      if (old) old.remove();
      const b = classBadge(n.classification);
      entry.nameEl.textContent = fitName(entry.shortName, !!b);
      if (b) {
        const bg = svg("g", { class: `badge-g badge-${n.classification.toLowerCase()}`, transform: `translate(${this.layout.nodeWidth - 44},6)` });
        bg.append(svg("rect", { width: 38, height: 16, rx: 8 }));
        const t = svg("text", { x: 19, y: 12, "text-anchor": "middle" });
        t.textContent = b;
        bg.append(t);
        g.append(bg);
      }
    }
    if (state.selected) this.renderPanel();
  }

  async poll(position) {
    let last = position;
    let lastRunning = [...(this.running || [])].sort().join("\n");
    let ticks = 0;
    while (!this.signal.aborted) {
      await new Promise((r) => setTimeout(r, 2000));
      if (this.signal.aborted || document.hidden) continue;
      try {
        ticks++;
        const p = await gql(POLL);
        const running = p.runs.items.map((r) => r.asset).sort().join("\n");
        // Freshness moves with the clock as well: a full refresh every 30 s regardless.
        if (p.logPosition !== last || running !== lastRunning || ticks % 15 === 0) {
          const status = await gql(STATUS);
          if (this.signal.aborted) return;
          this.applyStatus(status);
          last = status.logPosition;
          lastRunning = running;
        }
      } catch {
        // A restart or a network blip: try again on the next tick.
      }
    }
  }

  // --- Keyboard ----------------------------------------------------------------------

  /** Makes `key`'s node the one the Tab key reaches. */
  rove(key) {
    if (this.roving === key) return;
    const old = this.roving && this.nodes.get(this.roving);
    if (old) old.el.setAttribute("tabindex", "-1");
    const n = this.nodes.get(key);
    if (!n) return;
    n.el.setAttribute("tabindex", "0");
    this.roving = key;
  }

  moveFocus(key) {
    this.rove(key);
    this.nodes.get(key).el.focus({ preventScroll: true });
  }

  /** The visible node an arrow key leads to from `key`: right and left follow the edges
   * (downstream, upstream; else the nearest node in the next column), up and down move
   * within the column. */
  neighbour(key, dir) {
    const from = this.nodes.get(key).layout;
    const visible = (k) => !this.nodes.get(k).el.classList.contains("hidden");
    const nearest = (keys) => {
      let best = null, bestD = Infinity;
      for (const k of keys) {
        const n = this.nodes.get(k).layout;
        const d = Math.abs(n.y - from.y) + Math.abs(n.x - from.x) / 4;
        if (k !== key && visible(k) && d < bestD) { best = k; bestD = d; }
      }
      return best;
    };
    if (dir === "down" || dir === "up") {
      const column = [...this.nodes.values()].filter((n) => n.layout.x === from.x && (dir === "down" ? n.layout.y > from.y : n.layout.y < from.y));
      return nearest(column.map((n) => n.layout.key));
    }
    const linked = nearest(dir === "right" ? this.downs.get(key) : this.ups.get(key));
    if (linked) return linked;
    const beyond = [...this.nodes.values()].filter((n) => dir === "right" ? n.layout.x > from.x : n.layout.x < from.x);
    if (!beyond.length) return null;
    const x = dir === "right" ? Math.min(...beyond.map((n) => n.layout.x)) : Math.max(...beyond.map((n) => n.layout.x));
    return nearest(beyond.filter((n) => n.layout.x === x).map((n) => n.layout.key));
  }

  // --- Search, selection, focus -------------------------------------------------------

  search(text) {
    state.search = text;
    const q = text.trim().toLowerCase();
    this.matches = [];
    for (const [key, n] of this.nodes) {
      const hit = q !== "" && key.toLowerCase().includes(q);
      n.el.classList.toggle("match", hit);
      if (hit) this.matches.push(key);
    }
    this.matches.sort((a, b) => a.length - b.length || a.localeCompare(b));
    this.surface.classList.toggle("searching", q !== "");
    this.results.replaceChildren(...this.matches.slice(0, 12).map((key) =>
      h("li", {}, h("button", { type: "button", class: "link", onclick: () => this.select(key, true) }, key))));
    if (q !== "" && this.matches.length === 0) this.results.append(h("li", { class: "muted" }, "No asset matches"));
    const count = document.getElementById("graph-count");
    if (count) count.textContent = q ? `${this.matches.length} of ${this.nodes.size} match` : `${this.nodes.size} assets`;
  }

  select(key, center) {
    const prev = state.selected && this.nodes.get(state.selected);
    if (prev) prev.el.classList.remove("selected");
    state.selected = key;
    const n = this.nodes.get(key);
    if (!n) return;
    n.el.classList.add("selected");
    this.rove(key);
    this.focusButton.disabled = false;
    if (center) this.centerOn(n.layout);
    this.renderPanel();
  }

  renderPanel() {
    const n = this.nodes.get(state.selected);
    if (!n || !n.data) return;
    const d = n.data;
    // Re-rendered only when something shown changed (it is re-read every few seconds).
    const signature = JSON.stringify([d, n.status]);
    if (this.panelSignature === signature) return;
    this.panelSignature = signature;
    const reasons = d.staleReasons.map((r) => r.replace(/_/g, " "));
    this.panel.replaceChildren(
      h("h2", {}, h("a", { href: assetHref(d.key), id: "selected-link" }, d.key)),
      h("p", {}, h("span", { class: `pill status-${n.status}` }, n.status),
        classBadge(d.classification) ? h("span", { class: "badge" }, classBadge(d.classification)) : null),
      d.partitioned ? h("p", {}, `${d.partitions - d.notFresh} of ${d.partitions} partitions fresh`) : null,
      reasons.length ? h("p", {}, "Why: " + reasons.join(", ")) : null,
      d.freshness ? h("p", {}, `Freshness SLA: ${d.freshness}`) : null,
      h("p", {}, `${this.ups.get(d.key).length} upstream, ${this.downs.get(d.key).length} downstream`),
      h("p", {}, h("a", { href: assetHref(d.key), class: "button" }, "Open asset page")),
    );
  }

  toggleFocus() {
    state.focus = state.focus ? null : state.selected;
    this.applyFocus();
  }

  changeDepth() {
    const v = this.depthSelect.value;
    state.depth = v === "all" ? "all" : Number(v);
    if (state.focus) this.applyFocus();
  }

  applyFocus() {
    const keep = state.focus ? this.neighbourhood(state.focus, state.depth) : null;
    for (const [key, n] of this.nodes) n.el.classList.toggle("hidden", !!keep && !keep.has(key));
    for (const e of this.edgeEls) e.classList.toggle("hidden", !!keep && !(keep.has(e.dataset.from) && keep.has(e.dataset.to)));
    this.focusButton.textContent = state.focus ? "Show all" : "Focus";
    this.focusButton.setAttribute("aria-pressed", state.focus ? "true" : "false");
    const count = document.getElementById("graph-count");
    if (count) count.textContent = keep ? `${keep.size} of ${this.nodes.size} shown (focus on ${state.focus})` : `${this.nodes.size} assets`;
    if (keep) this.fitTo([...keep].map((k) => this.nodes.get(k).layout));
    else this.fit();
  }

  /** The asset with everything upstream and downstream of it within `depth` hops. */
  neighbourhood(key, depth) {
    const keep = new Set([key]);
    for (const adj of [this.ups, this.downs]) {
      let frontier = [key];
      for (let d = 0; frontier.length && (depth === "all" || d < depth); d++) {
        const next = [];
        for (const k of frontier) for (const m of adj.get(k)) if (!keep.has(m)) { keep.add(m); next.push(m); }
        frontier = next;
      }
    }
    return keep;
  }

  // --- Pan and zoom -------------------------------------------------------------------

  setView(v) {
    this.view = { ...v };
    this.apply();
  }

  apply() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      const { x, y, k } = this.view;
      this.plane.style.willChange = "transform";
      this.plane.style.transform = `translate(${x}px, ${y}px) scale(${k})`;
      this.surface.classList.toggle("far", k < FAR);
      clearTimeout(this.settle);
      this.settle = setTimeout(() => { this.plane.style.willChange = "auto"; }, 250);
      state.view = { ...this.view };
    });
  }

  size() {
    const r = this.surface.getBoundingClientRect();
    return { w: r.width || 800, h: r.height || 600 };
  }

  fit() {
    this.fitTo(null);
  }

  fitTo(nodes) {
    const { w, h: hh } = this.size();
    let x0 = 0, y0 = 0, x1 = this.layout.width, y1 = this.layout.height;
    if (nodes && nodes.length) {
      x0 = Math.min(...nodes.map((n) => n.x)) - 30;
      y0 = Math.min(...nodes.map((n) => n.y)) - 40;
      x1 = Math.max(...nodes.map((n) => n.x)) + this.layout.nodeWidth + 30;
      y1 = Math.max(...nodes.map((n) => n.y)) + this.layout.nodeHeight + 30;
    }
    const k = Math.min(1.2, Math.max(0.05, Math.min(w / (x1 - x0 || 1), hh / (y1 - y0 || 1))));
    this.setView({ k, x: (w - (x1 - x0) * k) / 2 - x0 * k, y: Math.max(8, (hh - (y1 - y0) * k) / 2) - y0 * k });
  }

  centerOn(n) {
    const { w, h: hh } = this.size();
    const k = Math.max(this.view.k, 0.8);
    this.setView({ k, x: w / 2 - (n.x + this.layout.nodeWidth / 2) * k, y: hh / 2 - (n.y + this.layout.nodeHeight / 2) * k });
  }

  ensureVisible(n) {
    const { w, h: hh } = this.size();
    const { x, y, k } = this.view;
    const sx = n.x * k + x, sy = n.y * k + y;
    if (sx < 0 || sy < 0 || sx + this.layout.nodeWidth * k > w || sy + this.layout.nodeHeight * k > hh) this.centerOn(n);
  }

  zoomBy(f, cx, cy) {
    const { w, h: hh } = this.size();
    if (cx === undefined) { cx = w / 2; cy = hh / 2; }
    const { x, y, k } = this.view;
    const nk = Math.min(4, Math.max(0.03, k * f));
    this.setView({ k: nk, x: cx - ((cx - x) * nk) / k, y: cy - ((cy - y) * nk) / k });
  }

  bindPanZoom() {
    // Focusing a node must not scroll the surface: the view moves only by pan and zoom.
    this.surface.addEventListener("scroll", () => { this.surface.scrollLeft = 0; this.surface.scrollTop = 0; });
    let drag = null;
    this.surface.addEventListener("pointerdown", (ev) => {
      if (ev.target.closest(".node") || ev.button !== 0) return;
      drag = { x: ev.clientX, y: ev.clientY, vx: this.view.x, vy: this.view.y };
      this.surface.setPointerCapture(ev.pointerId);
      this.surface.classList.add("panning");
    });
    this.surface.addEventListener("pointermove", (ev) => {
      if (!drag) return;
      this.setView({ k: this.view.k, x: drag.vx + ev.clientX - drag.x, y: drag.vy + ev.clientY - drag.y });
    });
    const end = () => { drag = null; this.surface.classList.remove("panning"); };
    this.surface.addEventListener("pointerup", end);
    this.surface.addEventListener("pointercancel", end);
    this.surface.addEventListener("wheel", (ev) => {
      ev.preventDefault();
      const r = this.surface.getBoundingClientRect();
      this.zoomBy(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    this.surface.addEventListener("keydown", (ev) => {
      if (ev.target !== this.surface) return;
      const step = 60;
      const moves = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] };
      if (moves[ev.key]) {
        ev.preventDefault();
        this.setView({ k: this.view.k, x: this.view.x + moves[ev.key][0], y: this.view.y + moves[ev.key][1] });
      } else if (ev.key === "+" || ev.key === "=") this.zoomBy(1.25);
      else if (ev.key === "-") this.zoomBy(0.8);
      else if (ev.key === "0") this.fit();
    });
  }
}
