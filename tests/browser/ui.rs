//! The web UI at `/`, end to end: a real `cairn up` on the example warehouse (its Python
//! scripts really run), the page in headless Chromium, and the API (as a non-browser client)
//! to say what the page should show.

use std::collections::BTreeSet;

use super::*;

/// The page's own fetches and module loads, all to the server (no CDN).
async fn assert_only_loopback(browser: &Browser, server: &Server) {
    let loaded = browser
        .client()
        .execute(
            "return performance.getEntriesByType('resource').map(e => e.name)",
            vec![],
        )
        .await
        .unwrap();
    let loaded: Vec<String> = serde_json::from_value(loaded).unwrap();
    assert!(!loaded.is_empty());
    for url in &loaded {
        assert!(
            url.starts_with(&server.url("/")),
            "loaded from elsewhere: {url}"
        );
    }
}

pub(super) async fn fill(browser: &Browser, css: &str, text: &str) {
    let c = browser.client();
    let el = c
        .wait()
        .at_most(TIMEOUT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    el.clear().await.unwrap();
    el.send_keys(text).await.unwrap();
}

/// The text of the element `css` selects.
pub(super) async fn text_of(c: &fantoccini::Client, css: &str) -> String {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

pub(super) async fn click(browser: &Browser, css: &str) {
    browser
        .wait_until(
            &format!("{css} to be enabled"),
            &format!(
                "const e = document.querySelector({css:?}); return !!e && !e.disabled && !e.hidden"
            ),
        )
        .await;
    // The element may be re-rendered (live statuses) between finding and clicking it.
    let mut attempts = 0;
    loop {
        let found = browser.client().find(Locator::Css(css)).await;
        match found {
            Ok(el) => match el.click().await {
                Ok(_) => return,
                Err(e) if attempts < 5 && e.to_string().contains("stale element") => {}
                Err(e) => panic!("click {css}: {e}"),
            },
            Err(e) if attempts < 5 => {
                let _ = e;
            }
            Err(e) => panic!("click {css}: {e}"),
        }
        attempts += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// With `CAIRN_SCREENSHOTS=DIR` (relative to the repository's root), a PNG of the page.
pub(super) async fn screenshot(browser: &Browser, name: &str) {
    if let Ok(dir) = std::env::var("CAIRN_SCREENSHOTS") {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(dir);
        let shot = browser.client().screenshot().await.unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), shot).unwrap();
    }
}

/// Waits (through the API) until `key`'s newest materialization exists.
pub(super) fn wait_materialized(server: &Server, token: Option<&str>, key: &str) {
    let started = Instant::now();
    loop {
        let v = server.graphql_as(
            token,
            &format!("{{ asset(key: {key:?}) {{ latestMaterialization {{ eventId }} }} }}"),
        );
        if !v["data"]["asset"]["latestMaterialization"].is_null() {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "{key} never materialized: {v}\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn strings(v: &Value) -> BTreeSet<String> {
    serde_json::from_value(v.clone()).unwrap()
}

/// The graph renders every asset (at the server's coordinates); search as you type marks
/// exactly the matching assets; focus shows exactly the asset's neighbourhood to the chosen
/// depth; an asset page shows partition health and freshness as the API reports them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_search_focus_and_asset_page() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::example(true);
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    wait_materialized(&server, None, "staging/encounters");

    c.goto(&server.url("/")).await.unwrap();
    browser
        .wait_until(
            "the graph",
            "return document.querySelector('div.graph[data-ready]') && document.querySelectorAll('.node[data-status]').length > 0",
        )
        .await;
    let api = server.graphql("{ graphLayout { nodes { key x y } } }");
    let keys: BTreeSet<String> = api["data"]["graphLayout"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(keys.len() >= 25, "{keys:?}");
    let drawn = c
        .execute(
            "return [...document.querySelectorAll('.node')].map(n => n.dataset.key)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(strings(&drawn), keys, "every asset is drawn, once");
    // Each drawn where the server's layout put it.
    for n in api["data"]["graphLayout"]["nodes"].as_array().unwrap() {
        let t = c
            .execute(
                "return document.querySelector(`.node[data-key=\"${arguments[0]}\"]`).getAttribute('transform')",
                vec![n["key"].clone()],
            )
            .await
            .unwrap();
        assert_eq!(
            t.as_str().unwrap(),
            format!(
                "translate({},{})",
                n["x"].as_f64().unwrap(),
                n["y"].as_f64().unwrap()
            )
        );
    }
    // Statuses: a PHI badge on every PHI asset, and a status class on every node.
    let phi = server.graphql("{ assets(classification: PHI, first: 500) { items { key } } }");
    let phi: BTreeSet<String> = phi["data"]["assets"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["key"].as_str().unwrap().to_owned())
        .collect();
    let badged = c
        .execute(
            "return [...document.querySelectorAll('.node .badge-phi')].map(b => b.closest('.node').dataset.key)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(strings(&badged), phi);
    // No name runs into its node's badge (measured as drawn: a shortened name ends with
    // "…" and keeps its full key in the node's title).
    let overlaps = c
        .execute(
            "return [...document.querySelectorAll('.node')].filter(n => n.querySelector('.badge-g')).filter(n => { const name = n.querySelector('.name').getBBox(); const badge = n.querySelector('.badge-g rect').getBBox(); const at = n.querySelector('.badge-g').transform.baseVal.consolidate().matrix.e; return name.x + name.width > at + badge.x - 2; }).map(n => [n.dataset.key, n.querySelector('.name').textContent, n.querySelector('.name').getBBox().x, n.querySelector('.name').getBBox().width, n.querySelector('.badge-g').transform.baseVal.consolidate().matrix.e])",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(overlaps, json!([]), "names drawn over their badge");
    let legend = c
        .execute(
            "return document.querySelector('.legend').textContent",
            vec![],
        )
        .await
        .unwrap();
    for word in ["Fresh", "Stale", "Missing", "Failed", "Running", "PHI"] {
        assert!(legend.as_str().unwrap().contains(word), "{legend}");
    }
    assert_only_loopback(&browser, &server).await;
    screenshot(&browser, "graph.png").await;

    // Live: a materialization reported to the server recolours its node, without a reload.
    let manual = "marts/lab_turnaround_monthly";
    let status_of =
        format!("return document.querySelector('.node[data-key=\"{manual}\"]').dataset.status");
    let before = c.execute(&status_of, vec![]).await.unwrap();
    assert_eq!(before, "missing", "a manual asset nothing built");
    c.execute("window.notReloaded = true", vec![])
        .await
        .unwrap();
    let reported = server.graphql(&format!(
        r#"mutation {{ reportMaterialization(asset: "{manual}", partition: "2025-01-01", dataVersion: "v1") }}"#
    ));
    assert!(reported["errors"].is_null(), "{reported}");
    browser
        .wait_until(
            "the node to change colour",
            &format!(
                "return window.notReloaded && document.querySelector('.node[data-key=\"{manual}\"]').dataset.status !== 'missing'"
            ),
        )
        .await;

    // Search as you type.
    fill(&browser, "#graph-search", "lab").await;
    let matched = browser
        .wait_until(
            "search matches",
            "const m = [...document.querySelectorAll('.node.match')].map(n => n.dataset.key); return m.length ? m : false",
        )
        .await;
    let expected: BTreeSet<String> = keys.iter().filter(|k| k.contains("lab")).cloned().collect();
    assert!(!expected.is_empty());
    assert_eq!(strings(&matched), expected);

    // Select from the results, focus at one hop.
    fill(&browser, "#graph-search", "staging/encounters").await;
    click(&browser, "#search-results button").await;
    browser
        .wait_until(
            "the selection panel",
            "const a = document.querySelector('#selected-link'); return a && a.textContent === 'staging/encounters'",
        )
        .await;
    c.find(Locator::Css("#focus-depth"))
        .await
        .unwrap()
        .select_by_value("1")
        .await
        .unwrap();
    click(&browser, "#focus-button").await;
    let shown = browser
        .wait_until(
            "focus",
            "const v = [...document.querySelectorAll('.node:not(.hidden)')].map(n => n.dataset.key); return v.length < document.querySelectorAll('.node').length && v",
        )
        .await;
    let around =
        server.graphql(r#"{ lineage(key: "staging/encounters", depth: 1) { nodes { key } } }"#);
    let around: BTreeSet<String> = around["data"]["lineage"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["key"].as_str().unwrap().to_owned())
        .collect();
    assert!(around.len() >= 3, "{around:?}");
    assert_eq!(strings(&shown), around);
    // Two hops show more, "Show all" everything.
    c.find(Locator::Css("#focus-depth"))
        .await
        .unwrap()
        .select_by_value("2")
        .await
        .unwrap();
    let two = browser
        .wait_until(
            "focus at two hops",
            &format!(
                "const n = document.querySelectorAll('.node:not(.hidden)').length; return n > {} && n",
                around.len()
            ),
        )
        .await;
    assert!(two.as_u64().unwrap() < keys.len() as u64);
    click(&browser, "#focus-button").await;
    browser
        .wait_until(
            "everything shown again",
            "return document.querySelectorAll('.node.hidden').length === 0",
        )
        .await;

    // The asset page: partition health and freshness, as the API has them.
    click(&browser, "#selected-link").await;
    browser
        .wait_until(
            "the asset page",
            "return document.querySelector('.asset-page[data-ready]') && document.querySelector('#health-bar[data-drawn]')",
        )
        .await;
    let a = server.graphql(
        r#"{ asset(key: "staging/encounters") { freshness { status } partitionHealth(maxRanges: 2000) { total fresh ranges { status } } } }"#,
    );
    let health = &a["data"]["asset"]["partitionHealth"];
    let summary = text_of(c, "#health-summary").await;
    assert!(
        summary.starts_with(&format!("{} partitions", health["total"])),
        "{summary} vs {health}"
    );
    assert!(
        summary.contains(&format!("{} fresh", health["fresh"])),
        "{summary} vs {health}"
    );
    let drawn = c
        .execute(
            "return Number(document.querySelector('#health-bar').dataset.drawn)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        drawn.as_u64(),
        Some(health["ranges"].as_array().unwrap().len() as u64)
    );
    // The bar is really painted in the colour of its last range (the newest, fresh).
    let pixel = c
        .execute(
            "const c = document.querySelector('#health-bar'); const d = c.getContext('2d').getImageData(c.width - 2, 5, 1, 1).data; return [d[0], d[1], d[2], d[3]]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(pixel[3], 255, "the bar is painted: {pixel}");
    let freshness = text_of(c, "#freshness-status").await;
    assert_eq!(
        freshness,
        a["data"]["asset"]["freshness"]["status"].as_str().unwrap()
    );
    // Why the newest partition is (not) stale is explained without asking.
    browser
        .wait_until(
            "the staleness explanation",
            "const s = document.querySelector('#staleness'); return (s && !s.textContent.includes('Loading') && s.textContent) || false",
        )
        .await;
    assert_only_loopback(&browser, &server).await;
    screenshot(&browser, "asset.png").await;
    browser.end().await;
}

/// A backfill launched from an asset page shows its dry-run count, creates runs that
/// complete, and its progress reaches the end; an SLA edit persists and changes the status
/// shown, a bad one is refused inline, and clearing it returns to the definition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_and_sla_from_the_ui() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::example(true);
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    let key = "ingest/adt_encounters";
    wait_materialized(&server, None, key);

    c.goto(&server.url(&format!("/#/asset/{}", key.replace('/', "%2F"))))
        .await
        .unwrap();
    browser
        .wait_until(
            "the asset page",
            "return !!document.querySelector('.asset-page[data-ready]')",
        )
        .await;
    fill(&browser, "#bf-from", "2025-03-01").await;
    fill(&browser, "#bf-to", "2025-03-03").await;
    click(&browser, "#bf-preview-button").await;
    let count = browser
        .wait_until(
            "the dry-run count",
            "const e = document.querySelector('#bf-count'); return e && e.textContent",
        )
        .await;
    assert!(
        count
            .as_str()
            .unwrap()
            .starts_with("3 partition runs across 1 asset"),
        "{count}"
    );
    // Nothing was launched by counting.
    let none = server.graphql("{ backfills { id } }");
    assert_eq!(none["data"]["backfills"], json!([]), "{none}");
    click(&browser, "#bf-launch").await;
    let progress = browser
        .wait_until(
            "the backfill to complete",
            "const p = document.querySelector('#backfill-progress'); const s = document.querySelector('#backfill-status'); \
             return p && s && s.textContent === 'completed' && [p.dataset.done, p.dataset.requested, p.dataset.failed]",
        )
        .await;
    assert_eq!(progress, json!(["3", "3", "0"]));
    let url = c.current_url().await.unwrap();
    let id = url
        .fragment()
        .unwrap()
        .trim_start_matches("/backfill/")
        .to_owned();
    let runs = server.graphql(&format!(
        "{{ backfill(id: {id:?}) {{ status runs {{ items {{ id partition status logs {{ lines {{ line }} }} }} }} }} }}"
    ));
    let runs = runs["data"]["backfill"]["runs"]["items"]
        .as_array()
        .unwrap()
        .clone();
    let partitions: BTreeSet<_> = runs
        .iter()
        .filter(|r| r["status"] == "succeeded")
        .map(|r| r["partition"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        partitions,
        ["2025-03-01", "2025-03-02", "2025-03-03"]
            .map(String::from)
            .into()
    );
    // A run's page: its status and its log as the API has it; the runs list filtered by
    // asset and status has the backfill's runs.
    let run = &runs[0];
    c.goto(&server.url(&format!("/#/run/{}", run["id"].as_str().unwrap())))
        .await
        .unwrap();
    let shown = browser
        .wait_until(
            "the run page",
            "const s = document.querySelector('#run-status'); const l = document.querySelector('#run-log'); \
             return s && s.textContent === 'succeeded' && l.dataset.complete === 'true' && l.textContent",
        )
        .await;
    let lines: Vec<&str> = run["logs"]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["line"].as_str().unwrap())
        .collect();
    for line in &lines {
        assert!(
            shown.as_str().unwrap().contains(line),
            "{line:?} not in {shown}"
        );
    }
    assert!(
        !c.find(Locator::Css("#run-cancel"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "no cancel for an ended run"
    );
    c.goto(&server.url(&format!(
        "/#/runs?status=succeeded&asset={}",
        key.replace('/', "%2F")
    )))
    .await
    .unwrap();
    let listed = browser
        .wait_until(
            "the runs list",
            "const t = document.querySelector('#runs-list table'); return t && [...t.querySelectorAll('tbody tr')].map(r => r.textContent)",
        )
        .await;
    for p in ["2025-03-01", "2025-03-02", "2025-03-03"] {
        assert!(
            listed
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r.as_str().unwrap().contains(p)),
            "{p} not listed: {listed}"
        );
    }

    // The backfills list shows it with its progress.
    c.goto(&server.url("/#/backfills")).await.unwrap();
    let listed = browser
        .wait_until(
            "the backfills list",
            "const t = document.querySelector('#backfills-list table'); return t && t.textContent",
        )
        .await;
    assert!(listed.as_str().unwrap().contains("3/3 done"), "{listed}");
    // An ended backfill offers no cancel.
    c.goto(&server.url(&format!("/#/backfill/{id}")))
        .await
        .unwrap();
    browser
        .wait_until(
            "the backfill page",
            "const s = document.querySelector('#backfill-status'); return s && s.textContent === 'completed'",
        )
        .await;
    assert!(
        !c.find(Locator::Css("#backfill-cancel"))
            .await
            .unwrap()
            .is_displayed()
            .await
            .unwrap(),
        "no cancel for an ended backfill"
    );

    // SLA: a yearly deadline (1 January, 00:00 UTC) for data built within the second before
    // it breaches at once: everything here was built today.
    c.goto(&server.url(&format!("/#/asset/{}", key.replace('/', "%2F"))))
        .await
        .unwrap();
    browser
        .wait_until(
            "the asset page",
            "return !!document.querySelector('.asset-page[data-ready] #sla-max')",
        )
        .await;
    click(&browser, "#sla-details summary").await;
    fill(&browser, "#sla-max", "soon").await;
    click(&browser, "#sla-save").await;
    let error = browser
        .wait_until(
            "the inline error",
            "const e = document.querySelector('#sla-error'); return (e && e.textContent) || false",
        )
        .await;
    assert!(error.as_str().unwrap().contains("soon"), "{error}");
    let unchanged = server.graphql(&format!(
        "{{ asset(key: {key:?}) {{ freshness {{ status policy {{ overridden }} }} }} }}"
    ));
    assert_eq!(
        unchanged["data"]["asset"]["freshness"]["policy"]["overridden"],
        false
    );
    let before = unchanged["data"]["asset"]["freshness"]["status"].clone();
    assert_ne!(before, "breach", "{unchanged}");

    fill(&browser, "#sla-max", "").await;
    fill(&browser, "#sla-warn", "").await;
    fill(&browser, "#sla-cron", "0 0 1 1 *").await;
    fill(&browser, "#sla-tz", "UTC").await;
    fill(&browser, "#sla-bound", "1s").await;
    click(&browser, "#sla-save").await;
    browser
        .wait_until(
            "the status to change",
            "const e = document.querySelector('.asset-page[data-ready] #freshness-status'); return e && e.textContent === 'breach'",
        )
        .await;
    let set = server.graphql(&format!(
        "{{ asset(key: {key:?}) {{ freshness {{ status policy {{ overridden maxLagSeconds deadlineCron deadlineLowerBoundSeconds }} }} }} }}"
    ));
    assert_eq!(set["data"]["asset"]["freshness"]["status"], "breach");
    assert_eq!(
        set["data"]["asset"]["freshness"]["policy"],
        json!({ "overridden": true, "maxLagSeconds": null, "deadlineCron": "0 0 1 1 *", "deadlineLowerBoundSeconds": 1 })
    );
    // It persists: a reload shows it.
    c.refresh().await.unwrap();
    browser
        .wait_until(
            "the status after a reload",
            "const e = document.querySelector('.asset-page[data-ready] #freshness-status'); return e && e.textContent === 'breach'",
        )
        .await;
    click(&browser, "#sla-details summary").await;
    click(&browser, "#sla-clear").await;
    browser
        .wait_until(
            "the definition's policy again",
            "const e = document.querySelector('.asset-page[data-ready] #freshness-status'); return e && e.textContent !== 'breach' && !document.querySelector('#sla-clear')",
        )
        .await;
    let cleared = server.graphql(&format!(
        "{{ asset(key: {key:?}) {{ freshness {{ status policy {{ overridden }} }} }} }}"
    ));
    assert_eq!(
        cleared["data"]["asset"]["freshness"]["policy"]["overridden"],
        false
    );
    browser.end().await;
}

/// In token mode the page asks for a token (kept in session storage only); a viewer without
/// `phi` sees a PHI asset's metadata as redacted, and is offered no backfill and no SLA edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_without_phi_sees_redactions_and_no_actions() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::example(false);
    let admin = server.token("admin", true);
    let viewer = server.token("viewer", false);
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    let key = "ingest/adt_encounters";
    wait_materialized(&server, Some(&admin), key);
    let meta = server.graphql_as(
        Some(&admin),
        &format!("{{ asset(key: {key:?}) {{ latestMaterialization {{ metadata }} }} }}"),
    );
    let rows = meta["data"]["asset"]["latestMaterialization"]["metadata"]["row_count"].clone();
    assert!(rows.is_number(), "{meta}");

    c.goto(&server.url("/")).await.unwrap();
    fill(&browser, "#token", &viewer).await;
    click(&browser, ".login button[type=submit]").await;
    browser
        .wait_until(
            "the graph, signed in",
            "return !!document.querySelector('div.graph[data-ready]') && document.querySelector('#me').textContent",
        )
        .await;
    let me = text_of(c, "#me").await;
    assert!(me.ends_with(" · viewer"), "{me}");
    let stored = c
        .execute(
            "return [localStorage.length, document.cookie, sessionStorage.getItem('cairn.token')]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(stored, json!([0, "", viewer]));

    c.goto(&server.url(&format!("/#/asset/{}", key.replace('/', "%2F"))))
        .await
        .unwrap();
    browser
        .wait_until(
            "the asset page",
            "return !!document.querySelector('.asset-page[data-ready]')",
        )
        .await;
    let redacted = text_of(c, "#metadata-redacted").await;
    assert!(redacted.contains("redacted"), "{redacted}");
    assert!(redacted.contains("phi scope"), "{redacted}");
    let absent = c
        .execute(
            "return ['#metadata', '#backfill', '#bf-launch', '#sla-save', '#sla-clear'].filter(s => document.querySelector(s))",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(absent, json!([]));
    let text = c
        .execute("return document.body.textContent", vec![])
        .await
        .unwrap();
    assert!(
        !text.as_str().unwrap().contains("row_count"),
        "no PHI metadata on the page"
    );
    browser.end().await;
}

/// Sets a date input's value as a person picking a day does (the picker's keystrokes
/// depend on the locale), firing its `change` event.
async fn pick_day(browser: &Browser, css: &str, day: &str) {
    browser
        .client()
        .execute(
            "const e = document.querySelector(arguments[0]); e.value = arguments[1]; e.dispatchEvent(new Event('change', { bubbles: true }));",
            vec![json!(css), json!(day)],
        )
        .await
        .unwrap();
}

const DAILY: &str = r#"
[partitions.daily]
type = "daily"
start = "2025-01-01"
timezone = "America/Chicago"

[[asset]]
key = "staging/census"
classification = "public"
partitions = "daily"
automation = "manual"
compute = { shell = "true" }
"#;

/// A backfill's range chosen by days: days outside the partitions are refused inline on
/// their field (before any request, and by the server for what the browser cannot know),
/// a reversed range too; valid days become the range of keys the dry run counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_range_by_dates_is_checked_inline() {
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let server = Server::with_warehouse(|_| DAILY.to_owned());
    let browser = Browser::start(&chromium, &chromedriver).await;
    let c = browser.client();
    let dates = server.graphql(
        r#"{ asset(key: "staging/census") { partitionDates { earliest latest timezone } } }"#,
    );
    let dates = &dates["data"]["asset"]["partitionDates"];
    assert_eq!(dates["earliest"], "2025-01-01", "{dates}");
    assert_eq!(dates["timezone"], "America/Chicago", "{dates}");
    let latest = dates["latest"].as_str().unwrap().to_owned();

    c.goto(&server.url("/#/asset/staging%2Fcensus"))
        .await
        .unwrap();
    browser
        .wait_until(
            "the asset page",
            "return !!document.querySelector('.asset-page[data-ready] #bf-date-from')",
        )
        .await;
    let bounds = c
        .execute(
            "const e = document.querySelector('#bf-date-from'); return [e.min, e.max]",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(bounds, json!(["2025-01-01", latest]));
    let error = "const e = document.querySelector('#bf-dates-error'); return (e.textContent && [e.textContent, document.querySelector('[aria-invalid=true]').id]) || false";

    pick_day(&browser, "#bf-date-from", "2024-12-31").await;
    let refused = browser.wait_until("the inline error", error).await;
    assert_eq!(
        refused,
        json!([
            "from: 2024-12-31 is before the first partition (2025-01-01)",
            "bf-date-from"
        ])
    );
    pick_day(&browser, "#bf-date-from", "2025-01-10").await;
    pick_day(&browser, "#bf-date-to", "2025-01-08").await;
    let reversed = browser.wait_until("the inline error", error).await;
    assert_eq!(
        reversed,
        json!([
            "the range is reversed: 2025-01-10 is after 2025-01-08",
            "bf-date-to"
        ])
    );
    pick_day(&browser, "#bf-date-to", "2025-01-12").await;
    let keys = browser
        .wait_until(
            "the range of keys",
            "const f = document.querySelector('#bf-from').value, t = document.querySelector('#bf-to').value; \
             return (f && !document.querySelector('#bf-dates-error').textContent && [f, t, document.querySelector('#bf-dates-note').textContent]) || false",
        )
        .await;
    assert_eq!(
        keys,
        json!([
            "2025-01-10",
            "2025-01-12",
            "3 partitions: 2025-01-10 … 2025-01-12"
        ])
    );
    super::ui::click(&browser, "#bf-preview-button").await;
    let count = browser
        .wait_until(
            "the dry-run count",
            "const e = document.querySelector('#bf-count'); return e && e.textContent",
        )
        .await;
    assert!(
        count
            .as_str()
            .unwrap()
            .starts_with("3 partition runs across 1 asset"),
        "{count}"
    );
    // The server checks what the browser cannot: its own answer for a day past the newest
    // partition (the input's bound is set from it, so ask it directly).
    let past = server.graphql(
        r#"{ asset(key: "staging/census") { partitionsBetween(from: "2025-01-01", to: "2999-01-01") { count } } }"#,
    );
    assert!(
        past["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("is after the newest partition"),
        "{past}"
    );
    browser.end().await;
}
