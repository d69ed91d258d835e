//! Loading and validating the definitions under an assets directory.
//!
//! The loader never stops at the first problem: it deserializes every entry of every
//! file separately, validates everything it could read, and returns either a complete
//! [`AssetGraph`] or every [`Diagnostic`] it found. There is no partially valid graph.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

mod assets;
mod classify;

use crate::diagnostic::{Diagnostic, LineIndex};
use crate::graph::{AssetGraph, Pool, StorageTarget};
use crate::openlineage::{OpenLineageConfig, OpenLineageSpec};
use crate::partitions::{PartitionsDef, PartitionsSpec};
use crate::spec::{AssetSpec, FILE_KEYS, PoolSpec, StorageSpec};

/// A definitions file to load: its path (as shown in messages) and its text.
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

/// Every problem found, in file and line order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} problem(s) in the asset definitions", .0.len())]
pub struct Diagnostics(pub Vec<Diagnostic>);

/// Loads every `*.toml` under `dir` (any depth). Paths in messages are relative to `dir`'s
/// parent when possible, so they read like `assets/ingest/adt.toml`.
pub fn load_dir(dir: &Path) -> Result<AssetGraph, Diagnostics> {
    let display_base = dir.parent().unwrap_or(Path::new(""));
    let mut files = Vec::new();
    let mut diagnostics = Vec::new();
    let mut paths: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(|entry| match entry {
            Ok(e) => Some(e.into_path()),
            Err(e) => {
                diagnostics.push(whole_file(
                    e.path().unwrap_or(dir),
                    format!("cannot read: {e}"),
                ));
                None
            }
        })
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        // alerts.toml is not a definitions file: it is checked below, against the graph.
        .filter(|p| !crate::alerts::is_alerts_file(dir, p))
        .collect();
    paths.sort();
    if !dir.is_dir() {
        diagnostics.push(whole_file(dir, "not a directory".into()));
    }
    for path in paths {
        let shown = path
            .strip_prefix(display_base)
            .unwrap_or(&path)
            .to_path_buf();
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(SourceFile { path: shown, text }),
            Err(e) => diagnostics.push(whole_file(&shown, format!("cannot read: {e}"))),
        }
    }
    if files.is_empty() && diagnostics.is_empty() {
        diagnostics.push(whole_file(
            dir,
            "no asset definitions (*.toml) found".into(),
        ));
    }
    let read_code = |rel: &str| std::fs::read(dir.join(rel));
    let result = crate::alerts::check_with_graph(dir, load_sources(&files, &read_code));
    match (result, diagnostics.is_empty()) {
        (Ok(graph), true) => Ok(graph),
        (Ok(_), false) => Err(Diagnostics(diagnostics)),
        (Err(Diagnostics(mut more)), _) => {
            diagnostics.append(&mut more);
            Err(Diagnostics(diagnostics))
        }
    }
}

/// Loads definitions from memory. `read_code` reads a `code` file given its path relative
/// to the assets directory.
pub fn load_sources(
    files: &[SourceFile],
    read_code: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
) -> Result<AssetGraph, Diagnostics> {
    let mut cx = Context {
        files,
        lines: files.iter().map(|f| LineIndex::new(&f.text)).collect(),
        diagnostics: Vec::new(),
        unparsed: Vec::new(),
    };
    let raw = cx.read_entries();
    let partitions = cx.build_partitions(&raw.partitions);
    let storage = cx.build_named(&raw.storage, "storage", |name, s: &StorageSpec| {
        StorageTarget {
            name: name.to_owned(),
            description: s.description.clone(),
            max_class: s.max_class,
        }
    });
    let pools = cx.build_named(&raw.pools, "pools", |name, p: &PoolSpec| Pool {
        name: name.to_owned(),
        max_concurrent: p.max_concurrent,
        phi_capable: p.phi_capable.unwrap_or(true),
    });
    for (name, entry) in &raw.pools {
        if entry.value.max_concurrent == 0 {
            cx.report(
                entry.file,
                entry.span.clone(),
                &format!("pools.{name}.max_concurrent"),
                "must be at least 1".into(),
            );
        }
    }
    let partition_specs = raw
        .partitions
        .iter()
        .map(|(n, e)| (n.clone(), e.canonical.clone()))
        .collect();
    let graph = cx.build_assets(
        &raw.assets,
        &partitions,
        &partition_specs,
        &storage,
        &pools,
        read_code,
    );
    let openlineage = cx.build_openlineage(raw.openlineage.as_ref());
    cx.diagnostics.sort();
    cx.diagnostics.dedup();
    cx.causes_first();
    match graph {
        Some(graph) if cx.diagnostics.is_empty() => Ok(graph.with_openlineage(openlineage)),
        _ => Err(Diagnostics(cx.diagnostics)),
    }
}

/// One deserialized entry and where it was written.
struct Entry<T> {
    file: usize,
    span: Range<usize>,
    value: T,
    /// The entry as written, as JSON with sorted keys: the canonical form for code versions.
    canonical: serde_json::Value,
}

#[derive(Default)]
struct RawEntries {
    partitions: BTreeMap<String, Entry<PartitionsSpec>>,
    storage: BTreeMap<String, Entry<StorageSpec>>,
    pools: BTreeMap<String, Entry<PoolSpec>>,
    openlineage: Option<Entry<OpenLineageSpec>>,
    assets: Vec<Entry<AssetSpec>>,
}

struct Context<'a> {
    files: &'a [SourceFile],
    lines: Vec<LineIndex>,
    diagnostics: Vec<Diagnostic>,
    /// Files with syntax errors, which were not read: names they define are unknown.
    unparsed: Vec<usize>,
}

impl Context<'_> {
    fn report(&mut self, file: usize, span: Range<usize>, field: &str, message: String) {
        let (line, column) = self.lines[file].locate(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.files[file].path.clone(),
            line,
            column,
            field: field.to_owned(),
            message,
        });
    }

    /// Reports a serde error; when it names no field, the TOML key written on its line
    /// stands in (that is the field the user has to look at).
    fn report_de(
        &mut self,
        file: usize,
        fallback: Range<usize>,
        prefix: &str,
        err: &toml::de::Error,
    ) {
        let span = err.span().unwrap_or(fallback);
        let message = err.message().trim_end_matches('\n').to_owned();
        let named = ["unknown field `", "missing field `"].iter().find_map(|p| {
            message
                .strip_prefix(p)
                .and_then(|r| r.split('`').next())
                .map(str::to_owned)
        });
        let message = match (&named, message.strip_prefix("unknown field `")) {
            (Some(name), Some(_)) => did_you_mean(&message, name),
            _ => message,
        };
        let field = named.or_else(|| self.key_on_line(file, span.start));
        let field = match field {
            Some(f) if !prefix.is_empty() => format!("{prefix}.{f}"),
            Some(f) => f,
            None => prefix.to_owned(),
        };
        self.report(file, span, &field, message);
    }

    /// A file that failed to parse defines nothing, so names it defines are "unknown"
    /// elsewhere: its syntax errors (the cause) come first, and unknown-name errors in
    /// other files say they may follow from it.
    fn causes_first(&mut self) {
        if self.unparsed.is_empty() {
            return;
        }
        let broken: Vec<&Path> = self
            .unparsed
            .iter()
            .map(|&i| self.files[i].path.as_path())
            .collect();
        let names = broken
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        for d in &mut self.diagnostics {
            if !broken.contains(&d.file.as_path()) && d.message.starts_with("unknown ") {
                d.message.push_str(&format!(
                    " (perhaps a consequence of the syntax error in {names}, which was not read)"
                ));
            }
        }
        self.diagnostics
            .sort_by_key(|d| !broken.contains(&d.file.as_path()));
    }

    fn key_on_line(&self, file: usize, offset: usize) -> Option<String> {
        let text = &self.files[file].text;
        let start = text[..offset.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = text[start..].lines().next()?;
        let (key, _) = line.split_once('=')?;
        let key = key.trim();
        (!key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.\"".contains(c)))
        .then(|| key.trim_matches('"').to_owned())
    }

    fn read_entries(&mut self) -> RawEntries {
        let mut raw = RawEntries::default();
        for (file, source) in self.files.iter().enumerate() {
            let (root, errors) = DeTable::parse_recoverable(&source.text);
            if !errors.is_empty() {
                self.unparsed.push(file);
                for err in &errors {
                    self.report_de(file, 0..0, "", err);
                }
                // A file with syntax errors is not read further: what recovery produced
                // could be half a definition.
                continue;
            }
            for (key, value) in root.into_inner() {
                let key_span = key.span();
                match key.get_ref().as_ref() {
                    "asset" => self.read_assets(file, value, &mut raw.assets),
                    "partitions" => self.read_table(file, "partitions", value, &mut raw.partitions),
                    "storage" => self.read_table(file, "storage", value, &mut raw.storage),
                    "pools" => self.read_table(file, "pools", value, &mut raw.pools),
                    "openlineage" => self.read_openlineage(file, value, &mut raw.openlineage),
                    other => self.report(
                        file,
                        key_span,
                        other,
                        format!(
                            "unknown top-level key `{other}`, expected one of {}",
                            FILE_KEYS.map(|k| format!("`{k}`")).join(", ")
                        ),
                    ),
                }
            }
        }
        raw
    }

    fn deserialize<T: for<'de> Deserialize<'de>>(
        &mut self,
        file: usize,
        field: &str,
        value: Spanned<DeValue<'_>>,
    ) -> Option<Entry<T>> {
        let span = value.span();
        let canonical = toml::Value::deserialize(ValueDeserializer::from(value.clone()))
            .ok()
            .and_then(|v| serde_json::to_value(v).ok())
            .unwrap_or_default();
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(value) => Some(Entry {
                file,
                span,
                value,
                canonical,
            }),
            Err(err) => {
                self.report_de(file, span, field, &err);
                None
            }
        }
    }

    fn read_assets(
        &mut self,
        file: usize,
        value: Spanned<DeValue<'_>>,
        out: &mut Vec<Entry<AssetSpec>>,
    ) {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.report(
                file,
                span,
                "asset",
                "`asset` must be an array of tables: write each asset as [[asset]]".into(),
            );
            return;
        };
        for (i, item) in items.into_iter().enumerate() {
            // The position in this file: the key is unknown when the entry did not deserialize.
            let field = format!("asset[{i}]");
            if let Some(entry) = self.deserialize::<AssetSpec>(file, &field, item) {
                out.push(entry);
            }
        }
    }

    fn read_table<T: for<'de> Deserialize<'de>>(
        &mut self,
        file: usize,
        kind: &str,
        value: Spanned<DeValue<'_>>,
        out: &mut BTreeMap<String, Entry<T>>,
    ) {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.report(
                file,
                span,
                kind,
                format!("`{kind}` must be a table: write [{kind}.NAME]"),
            );
            return;
        };
        for (name, item) in table {
            let name_span = name.span();
            let name = name.into_inner().into_owned();
            let field = format!("{kind}.{name}");
            if !is_identifier(&name) {
                self.report(
                    file,
                    name_span,
                    &field,
                    format!("name {name:?} must be lowercase letters, digits and '_'"),
                );
                continue;
            }
            let Some(entry) = self.deserialize::<T>(file, &field, item) else {
                continue;
            };
            if let Some(first) = out.get(&name) {
                let (line, _) = self.lines[first.file].locate(first.span.start);
                let first_at = format!("{}:{line}", self.files[first.file].path.display());
                self.report(
                    file,
                    name_span,
                    &field,
                    format!("`{kind}.{name}` is already defined at {first_at}"),
                );
                continue;
            }
            out.insert(name, entry);
        }
    }

    /// `[openlineage]`: one table, in one file (the definitions are one warehouse, with one
    /// lineage destination).
    fn read_openlineage(
        &mut self,
        file: usize,
        value: Spanned<DeValue<'_>>,
        out: &mut Option<Entry<OpenLineageSpec>>,
    ) {
        let span = value.span();
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            self.report(
                file,
                span,
                "openlineage",
                "`openlineage` must be a table: write [openlineage]".into(),
            );
            return;
        }
        let Some(entry) = self.deserialize::<OpenLineageSpec>(file, "openlineage", value) else {
            return;
        };
        if let Some(first) = out {
            let (line, _) = self.lines[first.file].locate(first.span.start);
            let first_at = format!("{}:{line}", self.files[first.file].path.display());
            self.report(
                file,
                span,
                "openlineage",
                format!("`openlineage` is already defined at {first_at}: write it once (in warehouse.toml)"),
            );
            return;
        }
        *out = Some(entry);
    }

    fn build_openlineage(
        &mut self,
        entry: Option<&Entry<OpenLineageSpec>>,
    ) -> Option<OpenLineageConfig> {
        let entry = entry?;
        match entry.value.build(entry.span.clone()) {
            Ok(config) => Some(config),
            Err(errors) => {
                for e in errors {
                    self.report(
                        entry.file,
                        e.span,
                        &format!("openlineage.{}", e.field),
                        e.message,
                    );
                }
                None
            }
        }
    }

    fn build_named<S, T>(
        &mut self,
        entries: &BTreeMap<String, Entry<S>>,
        _kind: &str,
        build: impl Fn(&str, &S) -> T,
    ) -> BTreeMap<String, T> {
        entries
            .iter()
            .map(|(name, e)| (name.clone(), build(name, &e.value)))
            .collect()
    }

    /// Builds every partitions definition; multi definitions after the ones they name.
    fn build_partitions(
        &mut self,
        specs: &BTreeMap<String, Entry<PartitionsSpec>>,
    ) -> BTreeMap<String, Arc<PartitionsDef>> {
        let mut built: BTreeMap<String, Arc<PartitionsDef>> = BTreeMap::new();
        let (multi, single): (Vec<_>, Vec<_>) = specs.iter().partition(|(_, e)| e.value.is_multi());
        for (name, entry) in single.into_iter().chain(multi) {
            let lookup = |n: &str| built.get(n).cloned();
            match PartitionsDef::from_spec(name, &entry.value, &lookup) {
                Ok(def) => {
                    built.insert(name.clone(), Arc::new(def));
                }
                Err(errors) => {
                    for e in errors {
                        let field = if e.field.is_empty() {
                            format!("partitions.{name}")
                        } else {
                            format!("partitions.{name}.{}", e.field)
                        };
                        let span = self.field_span(entry, &e.field);
                        self.report(entry.file, span, &field, e.message);
                    }
                }
            }
        }
        built
    }

    /// The span of `field` written inside an entry, found by its `field =` line; the
    /// entry's own span when not found. A table's span may cover only its header, so the
    /// search runs from the entry's start to the next table header.
    fn field_span<T>(&self, entry: &Entry<T>, field: &str) -> Range<usize> {
        let text = &self.files[entry.file].text;
        let leaf = field.rsplit('.').next().unwrap_or(field);
        if leaf.is_empty() {
            return entry.span.clone();
        }
        let region_end = entry.span.end.max(next_header(text, entry.span.start));
        let region = &text[entry.span.start..region_end];
        let mut offset = entry.span.start;
        for line in region.split_inclusive('\n') {
            let trimmed = line.trim_start();
            let at_key = trimmed
                .strip_prefix(leaf)
                .is_some_and(|rest| rest.trim_start().starts_with('='));
            // Inline tables: `deadline = { cron = "...", lower_bound = "..." }`.
            let pos = if at_key {
                Some(line.len() - trimmed.len())
            } else {
                line.find(&format!(" {leaf} ="))
                    .map(|p| p + 1)
                    .or_else(|| line.find(&format!("{{{leaf} =")).map(|p| p + 1))
            };
            if let Some(pos) = pos {
                return offset + pos..offset + pos + leaf.len();
            }
            offset += line.len();
        }
        entry.span.clone()
    }
}

/// The offset of the first table header (`[...]` at a line start) after the line holding
/// `from`, or the end of the text.
fn next_header(text: &str, from: usize) -> usize {
    let line_end = text[from..].find('\n').map_or(text.len(), |i| from + i + 1);
    let mut offset = line_end;
    for line in text[line_end..].split_inclusive('\n') {
        if line.trim_start().starts_with('[') {
            return offset;
        }
        offset += line.len();
    }
    text.len()
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn whole_file(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message,
    }
}

/// serde's "unknown field `strat`, expected one of `start`, `end`" with the closest
/// expected field suggested (the same edit distance as [`unknown_name`]).
fn did_you_mean(message: &str, unknown: &str) -> String {
    let Some((_, expected)) = message.split_once("expected") else {
        return message.to_owned();
    };
    let candidates: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    let best = candidates
        .iter()
        .map(|k| (strsim_distance(unknown, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min();
    match best {
        Some((_, k)) => format!("{message} (did you mean `{k}`?)"),
        None => message.to_owned(),
    }
}

/// "unknown dependency "x" (did you mean "y"?)"
fn unknown_name<'a>(what: &str, name: &str, known: impl Iterator<Item = &'a String>) -> String {
    let best = known
        .map(|k| (strsim_distance(name, k), k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min();
    match best {
        Some((_, k)) => format!("unknown {what} \"{name}\" (did you mean \"{k}\"?)"),
        None => format!("unknown {what} \"{name}\""),
    }
}

/// Levenshtein distance, for suggestions on small name lists.
fn strsim_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
