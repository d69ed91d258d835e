//! Property: classification never decreases down the lineage unless an asset
//! de-identifies, and lowering it by declaration alone is always refused.

use std::fmt::Write as _;
use std::path::PathBuf;

use cairn_model::Classification;
use cairn_model::loader::{SourceFile, load_sources};
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Node {
    declared: Option<Classification>,
    deidentifies: bool,
    /// Indices of earlier nodes this one reads.
    deps: Vec<usize>,
}

fn class() -> impl Strategy<Value = Option<Classification>> {
    prop::option::of(prop::sample::select(Classification::ALL.to_vec()))
}

fn dag() -> impl Strategy<Value = Vec<Node>> {
    prop::collection::vec(
        (
            class(),
            prop::bool::weighted(0.15),
            prop::collection::vec(any::<prop::sample::Index>(), 0..3),
        ),
        1..25,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (declared, deidentifies, picks))| {
                let mut deps: Vec<usize> = if i == 0 {
                    vec![]
                } else {
                    picks.iter().map(|p| p.index(i)).collect()
                };
                deps.sort();
                deps.dedup();
                Node {
                    declared,
                    deidentifies: deidentifies && declared.is_some(),
                    deps,
                }
            })
            .collect()
    })
}

fn to_toml(nodes: &[Node]) -> String {
    let mut text = String::new();
    for (i, n) in nodes.iter().enumerate() {
        let _ = writeln!(
            text,
            "[[asset]]\nkey = \"g/a{i}\"\ncompute = {{ command = [\"true\"] }}"
        );
        if let Some(c) = n.declared {
            let _ = writeln!(text, "classification = \"{c}\"");
        }
        if n.deidentifies {
            let _ = writeln!(
                text,
                "deidentifies = true\ndeidentification_reason = \"aggregates only\""
            );
        }
        let deps: Vec<String> = n.deps.iter().map(|d| format!("\"g/a{d}\"")).collect();
        let _ = writeln!(text, "deps = [{}]\n", deps.join(", "));
    }
    text
}

/// The reference model: effective classes in index order (deps always point backwards).
fn model(nodes: &[Node]) -> (Vec<Classification>, bool) {
    let mut eff: Vec<Classification> = Vec::new();
    let mut lowered = false;
    for n in nodes {
        let inherited = n.deps.iter().map(|&d| eff[d]).max();
        let e = match (n.declared, inherited) {
            (Some(own), _) if n.deidentifies => own,
            (Some(own), Some(up)) => {
                lowered |= own < up;
                own.max(up)
            }
            (Some(own), None) => own,
            (None, Some(up)) => up,
            (None, None) => Classification::Phi,
        };
        eff.push(e);
    }
    (eff, lowered)
}

proptest! {
    #[test]
    fn classification_propagates_down_the_lineage(nodes in dag()) {
        let files = [SourceFile { path: PathBuf::from("assets/gen.toml"), text: to_toml(&nodes) }];
        let result = load_sources(&files, &|_| Ok(Vec::new()));
        let (expected, lowered) = model(&nodes);
        match result {
            Ok(graph) => {
                prop_assert!(!lowered, "a lowered classification was accepted");
                for (i, n) in nodes.iter().enumerate() {
                    let asset = graph.get(&format!("g/a{i}")).unwrap();
                    prop_assert_eq!(asset.classification.effective, expected[i]);
                    if !n.deidentifies {
                        for &d in &n.deps {
                            let up = graph.get(&format!("g/a{d}")).unwrap();
                            prop_assert!(asset.classification.effective >= up.classification.effective);
                        }
                    }
                }
            }
            Err(diagnostics) => {
                prop_assert!(lowered, "unexpected diagnostics: {:#?}", diagnostics);
                prop_assert!(diagnostics.0.iter().all(|d| d.message.contains("cannot be lowered")), "{:#?}", diagnostics);
            }
        }
    }
}
