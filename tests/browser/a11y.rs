//! Accessibility and layout: the keyboard reaches and opens an asset; at 1366x768 no page
//! scrolls sideways; both themes follow `prefers-color-scheme` with text at WCAG AA
//! contrast; nothing moves when data arrives.

use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;

use super::ui::{screenshot, wait_materialized};
use super::*;

const CHAIN: &str = r#"
[[asset]]
key = "raw/admissions"
classification = "public"
automation = "manual"
compute = { shell = "true" }

[[asset]]
key = "staging/admissions"
deps = ["raw/admissions"]
automation = "manual"
compute = { shell = "true" }

[[asset]]
key = "marts/bed_occupancy"
deps = ["staging/admissions"]
automation = "manual"
compute = { shell = "true" }
"#;

/// Presses and releases a key, as a keyboard does (to whatever has the focus).
async fn press(c: &Client, key: Key) {
    let key: char = key.into();
    c.perform_actions(
        KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key }),
    )
    .await
    .unwrap();
}

const ACTIVE_NODE: &str =
    "const a = document.activeElement; return a && a.matches('.node') ? a.dataset.key : null";

/// From a fresh page, Tab reaches the lineage graph's nodes (one Tab stop for all of them),
/// the focused node is visibly outlined, the arrow keys follow the lineage, and Enter opens
/// the focused asset's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_keyboard_reaches_follows_and_opens_assets() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::with_warehouse(|_| CHAIN.to_owned());
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    c.goto(&server.url("/")).await.unwrap();
    browser
        .wait_until(
            "the graph",
            "return !!document.querySelector('div.graph[data-ready]')",
        )
        .await;
    let mut tabs = 0;
    let first = loop {
        press(c, Key::Tab).await;
        tabs += 1;
        let key = c.execute(ACTIVE_NODE, vec![]).await.unwrap();
        if let Some(key) = key.as_str() {
            break key.to_owned();
        }
        assert!(tabs < 20, "20 Tabs never reached an asset");
    };
    assert_eq!(first, "raw/admissions", "the first column's first asset");
    // Focus is visible: the node's outline is drawn.
    let outline = c
        .execute(
            "const a = document.activeElement; return [a.matches(':focus-visible'), getComputedStyle(a.querySelector('.box')).strokeWidth]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(outline, json!([true, "3px"]));
    // One Tab stop for all the nodes: the next Tab leaves the graph.
    press(c, Key::Tab).await;
    assert!(c.execute(ACTIVE_NODE, vec![]).await.unwrap().is_null());
    c.perform_actions(
        KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Shift.into(),
            })
            .then(KeyAction::Down {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Tab.into(),
            })
            .then(KeyAction::Up {
                value: Key::Shift.into(),
            }),
    )
    .await
    .unwrap();
    assert_eq!(c.execute(ACTIVE_NODE, vec![]).await.unwrap(), first);

    // Right follows an edge downstream, twice; Left comes back; Enter opens.
    press(c, Key::Right).await;
    assert_eq!(
        c.execute(ACTIVE_NODE, vec![]).await.unwrap(),
        "staging/admissions"
    );
    press(c, Key::Right).await;
    assert_eq!(
        c.execute(ACTIVE_NODE, vec![]).await.unwrap(),
        "marts/bed_occupancy"
    );
    press(c, Key::Left).await;
    assert_eq!(
        c.execute(ACTIVE_NODE, vec![]).await.unwrap(),
        "staging/admissions"
    );
    // The selection follows the focus, for screen readers (the panel is a live region).
    let selected = super::ui::text_of(c, "#selected-link").await;
    assert_eq!(selected, "staging/admissions");
    press(c, Key::Enter).await;
    let h1 = browser
        .wait_until(
            "the asset page",
            "const p = document.querySelector('.asset-page[data-ready] h1'); return p && p.textContent",
        )
        .await;
    assert_eq!(h1, "staging/admissions");
    assert_eq!(
        c.current_url().await.unwrap().fragment(),
        Some("/asset/staging%2Fadmissions")
    );
    browser.end().await;
}

/// The WCAG contrast of every visible text on the page against what is behind it: the
/// failures (normal text under 4.5:1, large text under 3:1) and the lowest ratio seen.
const CONTRAST: &str = r#"
const parse = (c) => {
  const m = /rgba?\(([^)]+)\)/.exec(c || "");
  if (!m) return null;
  const p = m[1].split(/[\s,\/]+/).filter(Boolean).map(Number);
  return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1];
};
const lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
  return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
};
const ratio = (a, b) => { const x = lum(a), y = lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
const over = (fg, bg) => [0, 1, 2].map((i) => fg[i] * fg[3] + bg[i] * (1 - fg[3])).concat(1);
// What is behind an element: its own and its ancestors' backgrounds, nearest first; for SVG
// text, the shape it sits on first.
const behind = (el) => {
  const layers = [];
  let e = el;
  if (el instanceof SVGElement) {
    const shape = el.closest(".badge-g") ? el.closest(".badge-g").querySelector("rect")
      : el.closest(".node") ? el.closest(".node").querySelector(".box")
      : el.closest(".group") ? el.closest(".group").querySelector("rect") : null;
    if (shape) layers.push(parse(getComputedStyle(shape).fill));
    e = el.ownerSVGElement.parentElement;
  }
  for (; e; e = e.parentElement) {
    const c = parse(getComputedStyle(e).backgroundColor);
    if (c && c[3] > 0) layers.push(c);
    if (c && c[3] === 1) break;
  }
  let bg = [255, 255, 255, 1];
  for (const l of layers.filter(Boolean).reverse()) bg = over(l, bg);
  return bg;
};
const opacity = (el) => { let o = 1; for (let e = el; e && e.nodeType === 1; e = e.parentElement || e.parentNode) o *= Number(getComputedStyle(e).opacity); return o; };
const failures = [];
let lowest = Infinity, checked = 0;
for (const el of document.body.querySelectorAll("*")) {
  if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  if (el.closest("script, style, title, option, noscript, .visually-hidden, [hidden]")) continue;
  if (el.closest(":disabled") || !el.getClientRects().length) continue;
  const st = getComputedStyle(el);
  if (st.visibility !== "visible" || st.display === "none" || opacity(el) < 1) continue;
  const fg = parse(el instanceof SVGElement ? st.fill : st.color);
  if (!fg) continue;
  const bg = behind(el);
  const r = ratio(over(fg, bg), bg);
  const size = parseFloat(st.fontSize), bold = Number(st.fontWeight) >= 700;
  const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
  checked++;
  lowest = Math.min(lowest, r);
  if (r < need) failures.push(`${el.tagName.toLowerCase()}.${el.getAttribute("class") || ""} "${el.textContent.trim().slice(0, 40)}": ${r.toFixed(2)} (${fg} on ${bg})`);
}
return { failures, lowest: Math.round(lowest * 100) / 100, checked };
"#;

/// Sum of the layout shifts not caused by input since the page loaded (Cumulative Layout
/// Shift), after waiting `settle_ms` for late data.
const LAYOUT_SHIFT: &str = r#"
const done = arguments[0];
setTimeout(() => {
  let sum = 0;
  const shifts = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) { sum += e.value; shifts.push(e.sources.map((s) => s.node && (s.node.id || s.node.className || s.node.nodeName)).join(" ")); }
  }).observe({ type: "layout-shift", buffered: true });
  setTimeout(() => done({ sum, shifts }), 50);
}, 2500);
"#;

/// What overflows: the document itself (only `main` scrolls, and only down) or `main`
/// sideways, in pixels.
const OVERFLOW: &str = r#"
const d = document.documentElement, m = document.querySelector("main");
return { page_x: d.scrollWidth - d.clientWidth, page_y: d.scrollHeight - d.clientHeight, main_x: m.scrollWidth - m.clientWidth, width: window.innerWidth };
"#;

/// At 1366x768, in the light and the dark theme (emulated `prefers-color-scheme`): the
/// colours are the theme's, every text meets WCAG AA contrast, no page scrolls sideways,
/// and nothing shifts once the page is drawn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn laptop_screen_both_themes_contrast_and_no_layout_shift() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::example(true);
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    wait_materialized(&server, None, "staging/encounters");
    let runs = server.graphql(r#"{ runs(statuses: ["succeeded"], first: 1) { items { id } } }"#);
    let run = runs["data"]["runs"]["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    browser
        .cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1366, "height": 768, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await;
    let pages = [
        ("graph", "/#/", "div.graph[data-ready]"),
        (
            "asset",
            "/#/asset/staging%2Fencounters",
            ".asset-page[data-ready] #health-bar[data-drawn]",
        ),
        ("runs", "/#/runs", "#runs-list table"),
        ("run", &format!("/#/run/{run}"), "#run-log[data-complete]"),
        (
            "backfills",
            "/#/backfills",
            "#backfills-list p, #backfills-list table",
        ),
    ];
    for theme in ["light", "dark"] {
        browser
            .cdp(
                "Emulation.setEmulatedMedia",
                json!({ "features": [{ "name": "prefers-color-scheme", "value": theme }] }),
            )
            .await;
        for (name, path, ready) in &pages {
            c.goto(&server.url(path)).await.unwrap();
            c.refresh().await.unwrap();
            browser
                .wait_until(
                    &format!("the {name} page"),
                    &format!("return !!document.querySelector({ready:?})"),
                )
                .await;
            let shift = c.execute_async(LAYOUT_SHIFT, vec![]).await.unwrap();
            assert!(
                shift["sum"].as_f64().unwrap() < 0.01,
                "{theme} {name}: layout shift {shift}"
            );
            let overflow = c.execute(OVERFLOW, vec![]).await.unwrap();
            assert_eq!(
                overflow,
                json!({ "page_x": 0, "page_y": 0, "main_x": 0, "width": 1366 }),
                "{theme} {name}: scrolls sideways"
            );
            let contrast = c.execute(CONTRAST, vec![]).await.unwrap();
            assert!(
                contrast["checked"].as_u64().unwrap() > 5,
                "{theme} {name}: {contrast}"
            );
            assert_eq!(
                contrast["failures"],
                json!([]),
                "{theme} {name}: contrast under WCAG AA"
            );
            eprintln!(
                "{theme} {name}: lowest text contrast {} over {} texts; layout shift {} {}",
                contrast["lowest"], contrast["checked"], shift["sum"], shift["shifts"]
            );
            // The theme's colours: a dark page with light text, or the reverse.
            let colours = c
                .execute(
                    "const l = (c) => { const [r, g, b] = c.match(/\\d+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255; }; \
                     const s = getComputedStyle(document.body); return [l(s.backgroundColor), l(s.color)]",
                    vec![],
                )
                .await
                .unwrap();
            let (bg, fg) = (colours[0].as_f64().unwrap(), colours[1].as_f64().unwrap());
            if theme == "dark" {
                assert!(bg < 0.15 && fg > 0.8, "{theme} {name}: {colours}");
            } else {
                assert!(bg > 0.9 && fg < 0.2, "{theme} {name}: {colours}");
            }
            if *name == "graph" {
                // Every asset box is drawn in the theme (dark boxes on a dark page).
                let boxes = c
                    .execute(
                        "return [...document.querySelectorAll('.node .box')].map(b => { const [r, g, bl] = getComputedStyle(b).fill.match(/\\d+/g).map(Number); return (0.2126 * r + 0.7152 * g + 0.0722 * bl) / 255; })",
                        vec![],
                    )
                    .await
                    .unwrap();
                for l in boxes.as_array().unwrap() {
                    let l = l.as_f64().unwrap();
                    assert!(
                        if theme == "dark" { l < 0.25 } else { l > 0.8 },
                        "{theme}: a box of luminance {l}"
                    );
                }
                if theme == "dark" {
                    screenshot(&browser, "graph-dark.png").await;
                }
            }
            if *name == "asset" {
                // The health bar (a canvas) is painted in the theme's colours too.
                let painted = c
                    .execute(
                        "const c = document.querySelector('#health-bar'); const d = c.getContext('2d').getImageData(c.width - 2, 5, 1, 1).data; \
                         const want = getComputedStyle(c).getPropertyValue('--status-fresh').trim(); \
                         return [[d[0], d[1], d[2]], [1, 3, 5].map(i => parseInt(want.slice(i, i + 2), 16))]",
                        vec![],
                    )
                    .await
                    .unwrap();
                assert_eq!(painted[0], painted[1], "{theme}: the newest range is fresh");
            }
        }
    }
    browser.end().await;
}
