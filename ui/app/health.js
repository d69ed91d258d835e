// The partition health bar: drawn on a canvas from runs of one status (`partitionHealth`
// ranges with counts), so 100,000 partitions cost one request and a few thousand rectangles.
// Click (or press Enter on a focused range) to pick that range; shift-click extends it.

import { h } from "./api.js";

const COLORS = ["fresh", "stale", "missing", "failed"];

export function healthBar(health, { onPick }) {
  if (health.total === 0) return h("p", { class: "muted", id: "health-bar" }, "No partitions.");
  const canvas = h("canvas", { id: "health-bar", class: "health-bar", height: "28", role: "img",
    "aria-label": `Partition health: ${health.fresh} of ${health.total} fresh` });
  const select = h("select", { id: "health-range", "aria-label": "Partition ranges by status" },
    h("option", { value: "" }, `Ranges (${health.ranges.length}${health.truncated ? "+" : ""})…`),
    health.ranges.slice(0, 500).map((r, i) => h("option", { value: String(i) },
      `${r.status}: ${r.firstKey}${r.count > 1 ? " … " + r.lastKey : ""} (${r.count})`)));
  const tip = h("p", { class: "muted health-tip", "aria-live": "polite" }, " ");
  // Cumulative positions, so a click finds its range by binary search.
  const starts = [];
  let acc = 0;
  for (const r of health.ranges) { starts.push(acc); acc += r.count; }
  const shown = acc || 1;
  let anchor = null;
  const draw = () => {
    const w = canvas.clientWidth || 600;
    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(28 * dpr);
    const ctx = canvas.getContext("2d");
    const style = getComputedStyle(canvas);
    const color = Object.fromEntries(COLORS.map((c) => [c, style.getPropertyValue(`--status-${c}`).trim() || "#888"]));
    ctx.scale(dpr, dpr);
    ctx.clearRect(0, 0, w, 28);
    health.ranges.forEach((r, i) => {
      const x0 = (starts[i] / shown) * w;
      const x1 = ((starts[i] + r.count) / shown) * w;
      ctx.fillStyle = color[r.status] || "#888";
      ctx.fillRect(x0, 0, Math.max(x1 - x0, 1), 28);
    });
    canvas.dataset.drawn = String(health.ranges.length);
  };
  const at = (ev) => {
    const rect = canvas.getBoundingClientRect();
    const pos = ((ev.clientX - rect.left) / rect.width) * shown;
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= pos) lo = mid; else hi = mid - 1; }
    return lo;
  };
  canvas.addEventListener("mousemove", (ev) => {
    const r = health.ranges[at(ev)];
    if (r) tip.textContent = `${r.status}: ${r.firstKey}${r.count > 1 ? " … " + r.lastKey : ""} (${r.count})`;
  });
  const pick = (i, extend) => {
    const r = health.ranges[i];
    if (!r) return;
    if (extend && anchor !== null) {
      const [a, b] = anchor <= i ? [anchor, i] : [i, anchor];
      onPick(health.ranges[a].firstKey, health.ranges[b].lastKey);
    } else {
      anchor = i;
      onPick(r.firstKey, r.lastKey);
    }
  };
  canvas.addEventListener("click", (ev) => pick(at(ev), ev.shiftKey));
  select.addEventListener("change", () => select.value !== "" && pick(Number(select.value), false));
  const wrap = h("div", { class: "health" }, canvas, h("div", { class: "health-legend" },
    COLORS.map((c) => h("span", {}, h("span", { class: `swatch status-${c}` }), c)), select), tip);
  requestAnimationFrame(draw);
  new ResizeObserver(() => draw()).observe(canvas);
  return wrap;
}
