//! Tidy checks of docs/ARCHITECTURE.md's invariants.

use std::path::Path;

fn manifest(crate_dir: &str) -> toml::Table {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crate_dir)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.parse().unwrap()
}

/// The pure core has no IO: no async runtime, database, HTTP or process crates.
#[test]
fn pure_core_has_no_io_dependencies() {
    const FORBIDDEN: [&str; 9] = [
        "tokio",
        "sqlx",
        "axum",
        "hyper",
        "reqwest",
        "async-graphql",
        "cairn-store",
        "cairn-exec",
        "cairn-api",
    ];
    for crate_dir in ["cairn-model", "cairn-reconcile"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(crate_dir);
        if !path.exists() {
            continue;
        }
        let manifest = manifest(crate_dir);
        let deps = manifest
            .get("dependencies")
            .and_then(|d| d.as_table())
            .cloned()
            .unwrap_or_default();
        for name in deps.keys() {
            assert!(
                !FORBIDDEN.contains(&name.as_str()),
                "{crate_dir} must not depend on {name} (docs/ARCHITECTURE.md)"
            );
        }
    }
}

/// The store knows nothing of the graph's semantics.
#[test]
fn store_does_not_know_the_model() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../cairn-store");
    if !path.exists() {
        return;
    }
    let manifest = manifest("cairn-store");
    let deps = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .cloned()
        .unwrap_or_default();
    assert!(
        !deps.contains_key("petgraph"),
        "cairn-store must not depend on petgraph"
    );
}

/// The engine is the reconciler's shell: no HTTP, no GraphQL, no launching.
#[test]
fn engine_knows_no_http_nor_launching() {
    let manifest = manifest("cairn-engine");
    let deps = manifest
        .get("dependencies")
        .and_then(|d| d.as_table())
        .cloned()
        .unwrap_or_default();
    for name in ["axum", "async-graphql", "cairn-api", "cairn-exec", "hyper"] {
        assert!(
            !deps.contains_key(name),
            "cairn-engine must not depend on {name} (docs/ARCHITECTURE.md)"
        );
    }
}
