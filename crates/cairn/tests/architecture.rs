//! Tidy checks of docs/ARCHITECTURE.md's invariants. A crate folder that is missing fails
//! them (the map names every crate), it never makes them pass by skipping.

use std::path::{Path, PathBuf};

/// Every crate of the architecture, with the workspace crates it may depend on (inward only).
const CRATES: [(&str, &[&str]); 9] = [
    ("cairn-model", &[]),
    ("cairn-alert", &["cairn-model"]),
    ("cairn-reconcile", &["cairn-model"]),
    ("cairn-store", &[]),
    ("cairn-exec", &["cairn-model", "cairn-store"]),
    (
        "cairn-engine",
        &["cairn-model", "cairn-reconcile", "cairn-store"],
    ),
    (
        "cairn-outbox",
        &["cairn-model", "cairn-alert", "cairn-store", "cairn-engine"],
    ),
    (
        "cairn-api",
        &[
            "cairn-model",
            "cairn-reconcile",
            "cairn-store",
            "cairn-engine",
        ],
    ),
    (
        "cairn",
        &[
            "cairn-model",
            "cairn-reconcile",
            "cairn-store",
            "cairn-exec",
            "cairn-engine",
            "cairn-api",
            "cairn-alert",
            "cairn-outbox",
        ],
    ),
];

fn crates_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The names of a crate's `[dependencies]` (not dev- or build-dependencies).
fn dependencies(crate_dir: &str) -> Vec<String> {
    let path = crates_dir().join(crate_dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (docs/ARCHITECTURE.md names this crate)",
            path.display()
        )
    });
    let manifest: toml::Table = text.parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .map(|d| d.keys().cloned().collect())
        .unwrap_or_default()
}

/// The crates folder holds exactly the architecture's crates.
#[test]
fn the_crates_are_the_architectures() {
    let mut found: Vec<String> = std::fs::read_dir(crates_dir())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    found.sort();
    let mut expected: Vec<String> = CRATES.iter().map(|(c, _)| c.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected, "crates/ and docs/ARCHITECTURE.md disagree");
}

/// Dependencies point inward only.
#[test]
fn crates_depend_inward_only() {
    for (crate_dir, allowed) in CRATES {
        for name in dependencies(crate_dir) {
            assert!(
                !name.starts_with("cairn") || allowed.contains(&name.as_str()),
                "{crate_dir} must not depend on {name} (docs/ARCHITECTURE.md)"
            );
        }
    }
}

/// The pure core has no IO: no async runtime, database, HTTP or process crates.
#[test]
fn pure_core_has_no_io_dependencies() {
    const FORBIDDEN: [&str; 11] = [
        "tokio",
        "sqlx",
        "axum",
        "hyper",
        "reqwest",
        "async-graphql",
        "nix",
        "cairn-store",
        "cairn-exec",
        "cairn-api",
        "cairn-engine",
    ];
    for crate_dir in ["cairn-model", "cairn-reconcile"] {
        for name in dependencies(crate_dir) {
            assert!(
                !FORBIDDEN.contains(&name.as_str()),
                "{crate_dir} must not depend on {name} (docs/ARCHITECTURE.md)"
            );
        }
    }
}

/// The store knows nothing of the graph's semantics: not the model, not the graph library,
/// not cron schedules.
#[test]
fn store_does_not_know_the_model() {
    for name in dependencies("cairn-store") {
        assert!(
            !["cairn-model", "cairn-reconcile", "petgraph", "croner"].contains(&name.as_str()),
            "cairn-store must not depend on {name} (docs/ARCHITECTURE.md)"
        );
    }
}

/// The asset graph is the model's: petgraph is a dependency of cairn-model only.
#[test]
fn only_the_model_uses_petgraph() {
    for (crate_dir, _) in CRATES {
        if crate_dir != "cairn-model" {
            assert!(
                !dependencies(crate_dir).iter().any(|d| d == "petgraph"),
                "{crate_dir} must not depend on petgraph: the graph is cairn-model's (docs/ARCHITECTURE.md)"
            );
        }
    }
    assert!(dependencies("cairn-model").iter().any(|d| d == "petgraph"));
}

/// Alerts are decided and delivered from what the store persisted, not from the
/// reconciler's memory: the alert crate knows nothing of the store, the engine, the API or
/// the launcher (the binary's outbox feeds it).
#[test]
fn alerts_know_only_the_model() {
    for name in dependencies("cairn-alert") {
        assert!(
            ![
                "cairn-store",
                "cairn-engine",
                "cairn-api",
                "cairn-exec",
                "cairn-reconcile",
                "sqlx",
                "axum"
            ]
            .contains(&name.as_str()),
            "cairn-alert must not depend on {name} (docs/ARCHITECTURE.md)"
        );
    }
}

/// The engine is the reconciler's shell: no HTTP, no GraphQL, no launching.
#[test]
fn engine_knows_no_http_nor_launching() {
    for name in dependencies("cairn-engine") {
        assert!(
            !["axum", "async-graphql", "cairn-api", "cairn-exec", "hyper"].contains(&name.as_str()),
            "cairn-engine must not depend on {name} (docs/ARCHITECTURE.md)"
        );
    }
}

/// The Rust sources of a crate's `src`, each with its text up to its first `#[cfg(test)]`
/// (unit tests may hold locks as they like).
fn sources(crate_dir: &str) -> Vec<(PathBuf, String)> {
    let root = crates_dir().join(crate_dir).join("src");
    let mut out: Vec<(PathBuf, String)> = walkdir::WalkDir::new(&root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
        .map(|e| {
            let text = std::fs::read_to_string(e.path()).unwrap();
            let text = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_owned(),
                None => text,
            };
            (e.into_path(), text)
        })
        .collect();
    assert!(!out.is_empty(), "{}: no sources", root.display());
    out.sort();
    out
}

/// Nothing is awaited (a store call above all) while the live view's write lock is held:
/// API readers wait on that lock, so it covers applying changes and planning, never IO.
/// A guard is held from `let [mut] NAME = ….view[()].write().await` until `drop(NAME)`,
/// `NAME.downgrade()` or the end of its block.
#[test]
fn nothing_is_awaited_while_the_views_write_lock_is_held() {
    let mut checked = 0;
    for (crate_dir, _) in CRATES {
        for (path, text) in sources(crate_dir) {
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                let takes =
                    line.contains("view.write().await") || line.contains("view().write().await");
                if !takes || !line.trim_start().starts_with("let ") {
                    continue;
                }
                checked += 1;
                let name = line
                    .trim_start()
                    .trim_start_matches("let ")
                    .trim_start_matches("mut ")
                    .split([' ', ':'])
                    .next()
                    .unwrap()
                    .to_owned();
                let indent = line.len() - line.trim_start().len();
                for (j, held) in lines.iter().enumerate().skip(i + 1) {
                    let trimmed = held.trim_start();
                    let ends_block = !trimmed.is_empty()
                        && held.len() - trimmed.len() < indent
                        && trimmed.starts_with('}');
                    if ends_block
                        || held.contains(&format!("drop({name})"))
                        || held.contains(&format!("{name}.downgrade()"))
                    {
                        break;
                    }
                    assert!(
                        !held.contains(".await"),
                        "{}:{}: awaits while the view's write lock `{name}` (taken on line {}) is held; read from the store before taking it, write after releasing it",
                        path.display(),
                        j + 1,
                        i + 1
                    );
                }
            }
        }
    }
    assert!(
        checked > 0,
        "no write lock of the view found: is the check still looking at the right thing?"
    );
}

/// The API reads the engine through its methods and changes it through them; it never
/// reaches into the engine's fields.
#[test]
fn the_api_reaches_no_engine_field() {
    for (path, text) in sources("cairn-api") {
        let code: String = text.split_whitespace().collect();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("engine.") {
            let after = &rest[i + "engine.".len()..];
            let ident: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let call =
                after[ident.len()..].starts_with('(') || after[ident.len()..].starts_with("::");
            assert!(
                ident.is_empty() || call,
                "{}: reaches the engine's field `{ident}`; use a method of cairn_engine::Engine",
                path.display()
            );
            rest = after;
        }
    }
}

/// The reconciler's loop is the live view's only writer: the API changes what it holds
/// through the reconciler's handle, whose commands the loop applies between ticks.
#[test]
fn only_the_reconciler_writes_the_view() {
    let root = crates_dir();
    let owner = root.join("cairn-engine/src/reconciler");
    // Where `LiveView::write` is defined.
    let definition = root.join("cairn-engine/src/live.rs");
    let mut found = 0;
    for (crate_dir, _) in CRATES {
        for (path, text) in sources(crate_dir) {
            let writes = text.contains("view.write()") || text.contains("view().write()");
            if !writes || path == definition {
                continue;
            }
            assert!(
                path.starts_with(&owner),
                "{}: writes the live view; send the reconciler a command through its Handle",
                path.display()
            );
            found += 1;
        }
    }
    assert!(
        found > 0,
        "no write of the view found in the reconciler: is the check still looking at the right thing?"
    );
}
