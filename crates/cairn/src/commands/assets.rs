use std::path::Path;
use std::process::ExitCode;

use cairn_model::{AssetDef, AssetGraph, Selection};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Only these assets (selection syntax: `+key`, `key+`, `group:ingest`, `tag:source=epic`,
    /// `classification:phi`, ...).
    selection: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(dir: &Path, args: Args) -> anyhow::Result<ExitCode> {
    let graph = super::load_or_report(dir)?;
    let ids = match &args.selection {
        Some(s) => Selection::parse(s)?.resolve(&graph)?,
        None => graph.topological_order().to_vec(),
    };
    let rows: Vec<Row> = ids
        .iter()
        .map(|&id| Row::of(&graph, graph.asset(id)))
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&rows);
        println!("{} of {} assets", rows.len(), graph.len());
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(serde::Serialize)]
struct Row {
    key: String,
    group: String,
    partitions: String,
    freshness: String,
    automation: String,
    classification: String,
}

impl Row {
    fn of(_graph: &AssetGraph, asset: &AssetDef) -> Self {
        Row {
            key: asset.key.to_string(),
            group: asset.group.clone(),
            partitions: super::graph::partitions_label(asset),
            freshness: asset
                .freshness
                .as_ref()
                .map_or("-".into(), |f| f.to_string()),
            automation: if asset.is_source {
                "source".into()
            } else {
                asset.automation.to_string()
            },
            classification: asset.classification.effective.to_string(),
        }
    }
}

fn print_table(rows: &[Row]) {
    let header = [
        "KEY",
        "GROUP",
        "PARTITIONS",
        "FRESHNESS",
        "AUTOMATION",
        "CLASSIFICATION",
    ];
    let cells: Vec<[&str; 6]> = rows
        .iter()
        .map(|r| {
            [
                &*r.key,
                &*r.group,
                &*r.partitions,
                &*r.freshness,
                &*r.automation,
                &*r.classification,
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cols: [&str; 6]| {
        let mut out = String::new();
        for (i, (cell, w)) in cols.iter().zip(widths).enumerate() {
            if i + 1 == cols.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{out}");
    };
    line(header);
    for row in cells {
        line(row);
    }
}
