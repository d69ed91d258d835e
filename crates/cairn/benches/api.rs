//! The GraphQL API on loopback, through the real binary, over a generated 10,000-asset
//! warehouse. Targets: the whole lineage graph under 200 ms of server time, one asset's
//! page under 10 ms.
//!
//! `cargo bench -p cairn --bench api` (with `CAIRN_BENCH_DIR=DIR`, an empty or new
//! directory, the warehouse and its store are generated there and kept, for profiling).
//!
//! Server time is the `server-timing: graphql;dur=MS` header `cairn up` sets on every
//! `/graphql` response (authentication, execution and serialization, not the socket);
//! client time is the round trip seen here (one kept-alive connection, requests one at a
//! time, body read to the end).

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cairn_engine::Engine;
use cairn_engine::report::{Report, ReportKind, report};
use chrono::{NaiveDate, Utc};

/// `CAIRN_BENCH_QUICK=1` (or `-- --quick`): 200 assets and a few requests, to check the
/// answers in seconds (CI runs it so the bench cannot rot).
fn quick() -> bool {
    std::env::var_os("CAIRN_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--quick")
}

fn assets() -> usize {
    if quick() { 200 } else { 10_000 }
}

const LAYERS: usize = 10;
const PER_FILE: usize = 100;
/// Days of daily partitions (the definition starts this far back).
const DAYS: i64 = 365;
fn graph_runs() -> usize {
    if quick() { 5 } else { 50 }
}

fn page_runs() -> usize {
    if quick() { 40 } else { 1000 }
}

fn cairn(args: &[&str], cwd: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cairn {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// What an asset of the generated warehouse is.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    Source,
    Daily,
    Unpartitioned,
}

fn shape(i: usize) -> Shape {
    if i < assets() / LAYERS && i.is_multiple_of(5) {
        Shape::Source
    } else if i % 5 < 3 {
        Shape::Daily
    } else {
        Shape::Unpartitioned
    }
}

fn key(i: usize) -> String {
    let layer = i / (assets() / LAYERS);
    let group = ["raw", "staging", "core", "marts", "reports"][layer / 2];
    format!("{group}/l{layer}/asset_{i}")
}

/// 10,000 assets in 100 files, in 10 layers of 1,000: in the first layer, sources and
/// assets without upstreams; after it, each reads one to three assets of earlier layers
/// (mostly the one before). Three in five are daily partitioned (a year of partitions),
/// the rest unpartitioned; a few in the first layers are PHI (their downstreams inherit
/// it); one in four has a freshness SLA; everything is `manual`, so nothing runs.
fn generate(assets_dir: &Path, start: NaiveDate) {
    let gen_dir = assets_dir.join("gen");
    std::fs::create_dir_all(&gen_dir).unwrap();
    std::fs::write(
        assets_dir.join("partitions.toml"),
        format!("[partitions.daily]\ntype = \"daily\"\nstart = \"{start}\"\n"),
    )
    .unwrap();
    let per_layer = assets() / LAYERS;
    for file in 0..assets() / PER_FILE {
        let mut text = String::new();
        for i in file * PER_FILE..(file + 1) * PER_FILE {
            let layer = i / per_layer;
            let s = shape(i);
            let _ = write!(
                text,
                "[[asset]]\nkey = \"{}\"\ndescription = \"generated asset {i}, layer {layer}\"\n\
                 owners = [\"team{}@example.org\"]\ntags = {{ domain = \"d{}\", tier = \"t{}\" }}\n\
                 kinds = [\"{}\"]\nautomation = \"manual\"\n",
                key(i),
                i % 7,
                i % 10,
                layer % 3,
                if s == Shape::Source {
                    "table"
                } else {
                    "python"
                },
            );
            if s == Shape::Daily {
                text.push_str("partitions = \"daily\"\n");
            }
            // Undeclared assets without upstreams default to PHI (and the class is
            // inherited): the first layer says what it is, a few PHI ones raise it, and
            // some later ones de-identify.
            if layer < 2 && i % 97 == 3 {
                text.push_str("classification = \"phi\"\n");
            } else if layer == 0 {
                text.push_str(if i.is_multiple_of(3) {
                    "classification = \"limited\"\n"
                } else {
                    "classification = \"public\"\n"
                });
            } else if layer >= 2 && i % 10 == 5 {
                text.push_str(
                    "classification = \"deidentified\"\ndeidentifies = true\n\
                     deidentification_reason = \"drops direct identifiers, shifts dates\"\n",
                );
            }
            if s == Shape::Source {
                text.push_str("source = true\n");
            }
            let mut deps = Vec::new();
            if layer > 0 {
                // The layer before, then (for some) one two layers back and one anywhere
                // earlier.
                let base = (layer - 1) * per_layer;
                deps.push(base + (i * 7 + 3) % per_layer);
                if !i.is_multiple_of(3) {
                    deps.push(base + (i * 13 + 11) % per_layer);
                }
                if i % 4 == 1 {
                    deps.push((i * 31 + 17) % (layer * per_layer));
                }
                deps.sort_unstable();
                deps.dedup();
            }
            let deps: Vec<String> = deps
                .iter()
                .map(|&up| {
                    // A lagged window between daily assets, now and then.
                    let mapping = if s == Shape::Daily
                        && shape(up) == Shape::Daily
                        && up.is_multiple_of(11)
                    {
                        ", mapping = { type = \"time_window\", start_offset = -1, end_offset = -1 }"
                    } else {
                        ""
                    };
                    format!("{{ asset = \"{}\"{mapping} }}", key(up))
                })
                .collect();
            let _ = writeln!(text, "deps = [{}]", deps.join(", "));
            if s != Shape::Source {
                text.push_str("\n[asset.compute]\ncommand = [\"python3\", \"scripts/build.py\"]\n");
            }
            if i.is_multiple_of(4) {
                text.push_str("\n[asset.freshness]\nmax_lag = \"26h\"\n");
            }
            text.push('\n');
        }
        std::fs::write(gen_dir.join(format!("file_{file:03}.toml")), text).unwrap();
    }
}

/// The assets given materializations (or observations): 420, in every layer and shape.
fn seeded() -> Vec<usize> {
    // Spread over the layers, every kind.
    (0..assets())
        .filter(|i| i % 50 == 7 || i % 50 == 9 || (*i < assets() / LAYERS && i % 50 == 10))
        .collect()
}

/// A few reports through `cairn report` itself, then (the same function the command
/// calls, in this process, so 10,000 assets are not loaded per report) materializations
/// of the seeded assets: daily ones get the last 120 days with a gap every 13th day,
/// unpartitioned ones three, so pages have history, health ranges and staleness.
fn seed(root: &Path, assets_dir: &Path, store_url: &str, start: NaiveDate) -> (usize, Duration) {
    let day = |d: i64| (start + chrono::Days::new(d as u64)).to_string();
    let started = Instant::now();
    let mut n = 0;
    for &i in &seeded()[..4] {
        let k = key(i);
        let p = day(DAYS - 2);
        let mut args = vec![
            "report",
            &k,
            "--metadata",
            r#"{"rows": 1200, "via": "cli"}"#,
        ];
        if shape(i) == Shape::Daily {
            args.extend(["--partition", &p]);
        } else if shape(i) == Shape::Source {
            args.push("--observation");
        }
        cairn(&args, root);
        n += 1;
    }
    let cli = started.elapsed() / n as u32;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let graph = cairn_model::loader::load_dir(assets_dir).unwrap_or_else(|e| {
            panic!("{:#?}", &e.0[..e.0.len().min(5)]);
        });
        let store = cairn_store::open(store_url).await.unwrap();
        let now = Utc::now();
        let engine = Engine::load(graph, &store, now).await.unwrap();
        for i in seeded() {
            let mut reqs = Vec::new();
            let kind = if shape(i) == Shape::Source {
                ReportKind::Observation
            } else {
                ReportKind::Materialization
            };
            let mut req = Report::new(key(i), kind, "bench");
            if shape(i) == Shape::Daily {
                // The newest partition is built: it is the one the page shows.
                for d in (DAYS - 120..DAYS).filter(|d| d % 13 != 5) {
                    req.partition = Some(day(d));
                    req.metadata = serde_json::json!({ "rows": 1000 + d, "partition_day": d });
                    reqs.push(req.clone());
                }
            } else {
                for r in 0..3 {
                    req.metadata = serde_json::json!({ "rows": 1000 + r });
                    reqs.push(req.clone());
                }
            }
            for r in &reqs {
                report(&store, &engine, r, now)
                    .await
                    .unwrap_or_else(|e| panic!("reporting {}: {e}", r.asset));
                n += 1;
            }
        }
        store.close().await;
    });
    (n, cli)
}

/// `cairn up`, and the address it answers on.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn start_server(root: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["up", "--local", "--listen", "127.0.0.1:0", "--tick", "60s"])
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("cairn up exited before listening")
            .unwrap();
        if let Some(rest) = line.split(" on http://").nth(1) {
            let addr = rest.split_whitespace().next().unwrap();
            break format!("http://{addr}/graphql");
        }
    };
    // Keep draining (and showing) what it says, so it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("  [cairn up] {line}");
        }
    });
    Server { child, url }
}

struct Answer {
    client: Duration,
    /// Milliseconds, from `server-timing`.
    server: f64,
    bytes: usize,
    json: serde_json::Value,
}

fn post(agent: &ureq::Agent, url: &str, query: &str) -> Answer {
    let body = serde_json::json!({ "query": query }).to_string();
    let started = Instant::now();
    let mut res = agent
        .post(url)
        .header("content-type", "application/json")
        .send(&body)
        .unwrap();
    let bytes = res
        .body_mut()
        .with_config()
        .limit(1 << 30)
        .read_to_vec()
        .unwrap();
    let client = started.elapsed();
    let server = res
        .headers()
        .get("server-timing")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split("dur=").nth(1))
        .and_then(|v| v.parse().ok())
        .expect("a server-timing header");
    let json = serde_json::from_slice(&bytes).unwrap();
    Answer {
        client,
        server,
        bytes: bytes.len(),
        json,
    }
}

fn no_errors(a: &Answer) -> bool {
    a.json.get("errors").is_none_or(|e| e.is_null())
}

/// Median, p95 and max of a sample, in milliseconds.
fn stats(mut ms: Vec<f64>) -> (f64, f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((q * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.5), at(0.95), ms[ms.len() - 1])
}

fn report_line(name: &str, answers: &[Answer]) -> (f64, f64) {
    let (s50, s95, smax) = stats(answers.iter().map(|a| a.server).collect());
    let (c50, c95, cmax) = stats(
        answers
            .iter()
            .map(|a| a.client.as_secs_f64() * 1e3)
            .collect(),
    );
    let (b50, _, bmax) = stats(answers.iter().map(|a| a.bytes as f64).collect());
    println!(
        "{name:<40} n={:<5} server ms: median {s50:8.2} p95 {s95:8.2} max {smax:8.2} | client ms: median {c50:8.2} p95 {c95:8.2} max {cmax:8.2} | body: median {} max {} bytes",
        answers.len(),
        b50 as u64,
        bmax as u64,
    );
    (s50, s95)
}

const GRAPH: &str = "{ graph { nodes { key group kinds isSource classification partitioned notFresh partitions freshness } edges { from to } } }";

/// The page of asset `i`; `newest`: the newest daily partition's key (staleness needs a
/// partition for a partitioned asset).
fn page_query(i: usize, newest: &str) -> String {
    let key = key(i);
    let staleness = if shape(i) == Shape::Daily {
        format!("staleness(partition: \"{newest}\")")
    } else {
        "staleness".into()
    };
    format!(
        r#"{{ asset(key: "{key}") {{
  key group description owners tags {{ key value }}
  classification {{ effective declared source inheritedFrom deidentificationReason }}
  partitions {{ name kind description sensitiveKeys }}
  freshness {{ status detail policy {{ maxLagSeconds overridden }} }}
  latestMaterialization {{ partition at dataVersion metadata redacted }}
  partitionHealth {{ total fresh missing ranges {{ status firstKey lastKey count }} }}
  {staleness} {{ reason upstream upstreamPartition }}
  upstream(depth: 1) {{ key }}
  downstream(depth: 1) {{ key }}
  runs(first: 10) {{ items {{ id status }} }}
  history(first: 10) {{ items {{ eventId at partition }} }}
}} }}"#
    )
}

fn main() {
    // CAIRN_BENCH_DIR=DIR (empty or absent) generates there and keeps it, to profile
    // `cairn up` on the same warehouse afterwards.
    let kept = std::env::var_os("CAIRN_BENCH_DIR").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let root = kept.as_deref().unwrap_or(dir.path());
    if let Some(kept) = &kept {
        std::fs::create_dir_all(kept).unwrap();
        assert!(
            std::fs::read_dir(kept).unwrap().next().is_none(),
            "CAIRN_BENCH_DIR {} is not empty",
            kept.display()
        );
    }
    let assets_dir = root.join("assets");
    let today = Utc::now().date_naive();
    let start = today - chrono::Days::new(DAYS as u64);

    let started = Instant::now();
    generate(&assets_dir, start);
    println!(
        "generated {} assets in {} files in {:.2} s",
        assets(),
        assets() / PER_FILE,
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let validated = cairn(&["validate"], root);
    println!(
        "cairn validate: {:.2} s ({})",
        started.elapsed().as_secs_f64(),
        validated.trim()
    );
    cairn(&["migrate"], root);
    let store_url = cairn_store::resolve_url(None, &assets_dir);
    let started = Instant::now();
    let (events, per_cli) = seed(root, &assets_dir, &store_url, start);
    println!(
        "seeded {events} materializations/observations of {} assets in {:.1} s (`cairn report`, process start to exit: {:.0} ms each)",
        seeded().len(),
        started.elapsed().as_secs_f64(),
        per_cli.as_secs_f64() * 1e3
    );

    let started = Instant::now();
    let server = start_server(root);
    let listening = started.elapsed();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let wait = |query: &str| loop {
        let a = post(&agent, &server.url, query);
        if no_errors(&a) {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not ready after 5 minutes: {}",
            a.json
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let me = wait("{ me { role } }");
    let me_at = started.elapsed();
    wait("{ graph { edges { from } } }");
    let loaded = started.elapsed();
    println!(
        "cairn up: listening after {:.0} ms, `me` answered ({}) after {:.0} ms, catalog loaded (graph answers) after {:.2} s",
        listening.as_secs_f64() * 1e3,
        me.json["data"]["me"]["role"],
        me_at.as_secs_f64() * 1e3,
        loaded.as_secs_f64()
    );

    // The whole graph.
    let first = post(&agent, &server.url, GRAPH);
    assert!(no_errors(&first), "{}", first.json);
    let nodes = first.json["data"]["graph"]["nodes"].as_array().unwrap();
    let edges = first.json["data"]["graph"]["edges"].as_array().unwrap();
    assert_eq!(nodes.len(), assets());
    let stale = nodes
        .iter()
        .filter(|n| n["notFresh"].as_u64() > Some(0))
        .count();
    let mut classes = std::collections::BTreeMap::<String, usize>::new();
    for n in nodes {
        *classes
            .entry(n["classification"].as_str().unwrap_or("").into())
            .or_default() += 1;
    }
    println!(
        "graph: {} nodes ({classes:?}), {} edges, {stale} nodes with partitions not fresh\n",
        nodes.len(),
        edges.len()
    );
    for _ in 0..5 {
        let a = post(&agent, &server.url, GRAPH);
        assert!(no_errors(&a), "{}", a.json);
    }
    let graph: Vec<Answer> = (0..graph_runs())
        .map(|_| post(&agent, &server.url, GRAPH))
        .collect();
    // Every timed answer is the whole graph, without errors.
    for a in &graph {
        assert!(no_errors(a), "{}", a.json);
        assert_eq!(
            a.json["data"]["graph"]["nodes"].as_array().map(Vec::len),
            Some(assets())
        );
    }
    let (graph_median, _) = report_line("graph (full, target < 200 ms)", &graph);

    // One asset's page, over many keys: every tenth asset, and the seeded ones.
    let seeded = seeded();
    let newest = (start + chrono::Days::new(DAYS as u64 - 1)).to_string();
    let keys: Vec<(usize, bool)> = (0..page_runs())
        .map(|n| {
            if n.is_multiple_of(2) {
                (seeded[(n / 2) % seeded.len()], true)
            } else {
                ((n * 10 + 3) % assets(), false)
            }
        })
        .collect();
    let page = post(&agent, &server.url, &page_query(keys[0].0, &newest));
    assert!(no_errors(&page), "{}", page.json);
    let sample = &page.json["data"]["asset"];
    assert!(
        !sample["history"]["items"].as_array().unwrap().is_empty(),
        "a seeded asset has history: {sample}"
    );
    for &(i, _) in keys.iter().take(50) {
        let a = post(&agent, &server.url, &page_query(i, &newest));
        assert!(no_errors(&a), "{}", a.json);
    }
    let pages: Vec<(Answer, bool)> = keys
        .iter()
        .map(|&(i, seeded)| (post(&agent, &server.url, &page_query(i, &newest)), seeded))
        .collect();
    assert!(
        pages.iter().all(|(a, _)| no_errors(a)),
        "asset pages answer without errors"
    );
    let (with, without): (Vec<_>, Vec<_>) = pages.into_iter().partition(|(_, s)| *s);
    let with: Vec<Answer> = with.into_iter().map(|(a, _)| a).collect();
    let without: Vec<Answer> = without.into_iter().map(|(a, _)| a).collect();
    let all_server: Vec<f64> = with.iter().chain(&without).map(|a| a.server).collect();
    let all_client: Vec<f64> = with
        .iter()
        .chain(&without)
        .map(|a| a.client.as_secs_f64() * 1e3)
        .collect();
    let (s50, s95, smax) = stats(all_server);
    let (c50, c95, cmax) = stats(all_client);
    println!(
        "{:<40} n={:<5} server ms: median {s50:8.2} p95 {s95:8.2} max {smax:8.2} | client ms: median {c50:8.2} p95 {c95:8.2} max {cmax:8.2}",
        "asset page (all, target < 10 ms)",
        with.len() + without.len(),
    );
    report_line("  of seeded assets (with history)", &with);
    report_line("  of other assets", &without);

    // Where the graph's time goes: parts of the query.
    println!("\nparts of the graph query (20 requests each, after 3 to warm up):");
    for (name, q) in [
        ("me", "{ me { role } }"),
        ("graph nodes { key }", "{ graph { nodes { key } } }"),
        (
            "graph nodes { key notFresh partitions }",
            "{ graph { nodes { key notFresh partitions } } }",
        ),
        (
            "graph nodes { key freshness }",
            "{ graph { nodes { key freshness } } }",
        ),
        (
            "graph nodes { all fields }",
            "{ graph { nodes { key group kinds isSource classification partitioned notFresh partitions freshness } } }",
        ),
        ("graph edges { from to }", "{ graph { edges { from to } } }"),
        (
            "assets(first: 500) { items { key } }",
            "{ assets(first: 500) { items { key } } }",
        ),
    ] {
        for _ in 0..3 {
            let a = post(&agent, &server.url, q);
            assert!(no_errors(&a), "{}", a.json);
        }
        let answers: Vec<Answer> = (0..20).map(|_| post(&agent, &server.url, q)).collect();
        assert!(answers.iter().all(no_errors), "{}", answers[0].json);
        report_line(name, &answers);
    }

    println!(
        "\ntargets: graph median {graph_median:.1} ms server time (< 200 ms: {}), asset page median {s50:.2} ms / p95 {s95:.2} ms (< 10 ms: {})",
        if graph_median < 200.0 {
            "met"
        } else {
            "MISSED"
        },
        if s95 < 10.0 { "met" } else { "MISSED" },
    );
    drop(server);
}
