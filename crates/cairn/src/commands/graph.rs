use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;

use cairn_model::{AssetDef, AssetGraph, Classification};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[arg(long, value_enum, default_value = "dot")]
    format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Format {
    Dot,
    Json,
}

pub fn run(dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let graph = super::load_or_report(dir)?;
    match args.format {
        Format::Dot => print!("{}", to_dot(&graph)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&to_json(&graph))?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The partitions definition's name, with its kind when the name does not say it
/// ("lab_system_daily (multi)"), or "-" for unpartitioned assets.
pub fn partitions_label(asset: &AssetDef) -> String {
    match &asset.partitions {
        Some(p) if p.name == p.def.kind().as_str() => p.name.clone(),
        Some(p) => format!("{} ({})", p.name, p.def.kind().as_str()),
        None => "-".into(),
    }
}

fn to_json(graph: &AssetGraph) -> serde_json::Value {
    let nodes: Vec<_> = graph
        .topological_order()
        .iter()
        .map(|&id| {
            let a = graph.asset(id);
            serde_json::json!({
                "key": a.key.as_str(),
                "group": a.group,
                "description": a.description,
                "kinds": a.kinds,
                "tags": a.tags,
                "owners": a.owners,
                "source": a.is_source,
                "partitions": a.partitions.as_ref().map(|p| &p.name),
                "automation": a.automation.to_string(),
                "freshness": a.freshness.as_ref().map(|f| f.to_string()),
                "classification": a.classification.effective.as_str(),
                "declared_classification": a.classification.declared.map(|c| c.as_str()),
                "code_version": a.code_version,
            })
        })
        .collect();
    let edges: Vec<_> = graph
        .edges()
        .map(|(up, down, dep)| {
            serde_json::json!({
                "from": graph.asset(up).key.as_str(),
                "to": graph.asset(down).key.as_str(),
                "mapping": graph.asset(down).deps[dep].mapping.to_string(),
            })
        })
        .collect();
    serde_json::json!({ "nodes": nodes, "edges": edges })
}

fn to_dot(graph: &AssetGraph) -> String {
    let mut out = String::from(
        "digraph cairn {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"sans-serif\"];\n",
    );
    for &id in graph.topological_order() {
        let a = graph.asset(id);
        let color = match a.classification.effective {
            Classification::Phi => "#f4c7c3",
            Classification::Limited => "#fce8b2",
            Classification::Deidentified => "#c9daf8",
            Classification::Public => "#d9ead3",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{} | {}\", fillcolor=\"{color}\"];",
            a.key,
            a.key,
            a.classification.effective,
            partitions_label(a).replace('"', "'")
        );
    }
    for (up, down, dep) in graph.edges() {
        let mapping = graph.asset(down).deps[dep].mapping.to_string();
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"];",
            graph.asset(up).key,
            graph.asset(down).key,
            mapping.replace('"', "'")
        );
    }
    out.push_str("}\n");
    out
}
