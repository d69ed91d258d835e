//! Building assets from their specs: references, policies, commands, code versions.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;

use toml::Spanned;

use super::{Context, Entry, unknown_name};
use crate::asset::{
    AssetDef, AssetId, Command, Dependency, EffectiveClassification, Location, NamedPartitions,
    Program,
};
use crate::classification::{Classification, ClassificationSource};
use crate::code_version::derive_code_version;
use crate::graph::{AssetGraph, Pool, StorageTarget};
use crate::key::AssetKey;
use crate::partitions::{PartitionMapping, PartitionsDef};
use crate::policy::{Automation, BackfillPolicy, FreshnessPolicy, RetryPolicy, parse_duration};
use crate::spec::{AssetSpec, CommandSpec};

/// What an asset's spec may refer to: the other assets and the named definitions.
pub(super) struct Known<'a> {
    /// Asset key -> index into `all`.
    pub ids: &'a HashMap<String, usize>,
    pub all: &'a [&'a Entry<AssetSpec>],
    pub partitions: &'a BTreeMap<String, Arc<PartitionsDef>>,
    pub partition_specs: &'a BTreeMap<String, serde_json::Value>,
    pub storage: &'a BTreeMap<String, StorageTarget>,
    pub pools: &'a BTreeMap<String, Pool>,
    pub read_code: &'a dyn Fn(&str) -> std::io::Result<Vec<u8>>,
}

/// Where a problem with an asset's spec is: its file, and fields named under its key.
struct Site<'a> {
    file: usize,
    key: &'a AssetKey,
}

impl Site<'_> {
    fn at(&self, field: &str) -> String {
        format!("asset[{}].{field}", self.key)
    }
}

/// An asset's policies, as declared (defaults where not).
struct Policies {
    automation: Automation,
    freshness: Option<FreshnessPolicy>,
    retries: RetryPolicy,
    backfill: BackfillPolicy,
}

impl Context<'_> {
    pub(super) fn build_assets(
        &mut self,
        entries: &[Entry<AssetSpec>],
        partitions: &BTreeMap<String, Arc<PartitionsDef>>,
        partition_specs: &BTreeMap<String, serde_json::Value>,
        storage: &BTreeMap<String, StorageTarget>,
        pools: &BTreeMap<String, Pool>,
        read_code: &dyn Fn(&str) -> std::io::Result<Vec<u8>>,
    ) -> Option<AssetGraph> {
        // Keys first: dependencies refer to them.
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut valid = Vec::with_capacity(entries.len());
        for entry in entries {
            let key = &entry.value.key;
            match AssetKey::parse(key.get_ref()) {
                Ok(k) => {
                    if let Some(&first) = ids.get(k.as_str()) {
                        let other: &Entry<AssetSpec> = valid[first];
                        let (line, _) = self.lines[other.file].locate(other.value.key.span().start);
                        let at = format!("{}:{line}", self.files[other.file].path.display());
                        self.report(
                            entry.file,
                            key.span(),
                            &format!("asset[{k}].key"),
                            format!("duplicate asset key \"{k}\" (first defined at {at})"),
                        );
                        continue;
                    }
                    ids.insert(k.as_str().to_owned(), valid.len());
                    valid.push(entry);
                }
                Err(e) => self.report(entry.file, key.span(), "key", e.to_string()),
            }
        }

        let mut assets = Vec::with_capacity(valid.len());
        let mut complete = true;
        let known = Known {
            ids: &ids,
            all: &valid,
            partitions,
            partition_specs,
            storage,
            pools,
            read_code,
        };
        for entry in &valid {
            match self.build_asset(entry, &known) {
                Some(asset) => assets.push(asset),
                None => complete = false,
            }
        }
        if !complete {
            return None;
        }
        let graph = match AssetGraph::from_parts(
            assets,
            partitions.clone(),
            storage.clone(),
            pools.clone(),
        ) {
            Ok(graph) => graph,
            Err(cycles) => {
                for cycle in cycles {
                    let names: Vec<&str> = cycle
                        .iter()
                        .map(|id| valid[id.index()].value.key.get_ref().as_str())
                        .collect();
                    let first = valid[cycle[0].index()];
                    let dep_span = first
                        .value
                        .deps
                        .iter()
                        .find(|d| d.get_ref().asset() == names[names.len() - 2])
                        .map(|d| d.span());
                    self.report(
                        first.file,
                        dep_span.unwrap_or_else(|| first.value.key.span()),
                        &format!("asset[{}].deps", names[0]),
                        format!("dependency cycle: {}", names.join(" -> ")),
                    );
                }
                return None;
            }
        };
        self.classify(graph, &valid)
    }

    /// One asset from its spec, section by section; `None` when anything in it is wrong
    /// (every problem is reported, not only the first).
    fn build_asset(&mut self, entry: &Entry<AssetSpec>, known: &Known<'_>) -> Option<AssetDef> {
        let spec = &entry.value;
        let key = AssetKey::parse(spec.key.get_ref()).expect("keys were validated");
        let site = Site {
            file: entry.file,
            key: &key,
        };
        let before = self.diagnostics.len();
        let named_partitions = self.asset_partitions(&site, spec, known);
        let deps = self.asset_deps(&site, spec, known, named_partitions.as_ref());
        self.check_references(&site, spec, known);
        let (compute, observe) = self.asset_commands(&site, spec);
        let policies = self.asset_policies(&site, spec, named_partitions.is_some());
        let deidentification_reason = self.deidentification_reason(&site, spec);
        let code_contents = self.code_contents(&site, spec, known);
        if self.diagnostics.len() != before || deps.len() != spec.deps.len() {
            return None;
        }
        let canonical = canonical_definition(&entry.canonical, known.partition_specs);
        let (code_version, code_version_explicit) = match &spec.code_version {
            Some(v) => (v.clone(), true),
            None => (derive_code_version(&canonical, &code_contents), false),
        };
        let (line, _) = self.lines[entry.file].locate(spec.key.span().start);
        Some(AssetDef {
            group: spec
                .group
                .clone()
                .unwrap_or_else(|| key.default_group().to_owned()),
            key,
            description: spec.description.clone(),
            owners: spec.owners.clone(),
            tags: spec.tags.clone(),
            kinds: spec.kinds.clone(),
            is_source: spec.source,
            deps,
            partitions: named_partitions,
            classification: EffectiveClassification {
                declared: spec.classification.as_ref().map(|c| *c.get_ref()),
                effective: Classification::Phi,
                source: ClassificationSource::Default,
                deidentification_reason,
            },
            storage: spec.storage.as_ref().map(|s| s.get_ref().clone()),
            pool: spec.pool.as_ref().map(|p| p.get_ref().clone()),
            code_files: spec.code.iter().map(|c| c.get_ref().clone()).collect(),
            code_version,
            code_version_explicit,
            outputs: spec.outputs.clone(),
            automation: policies.automation,
            compute,
            observe,
            freshness: policies.freshness,
            retries: policies.retries,
            backfill: policies.backfill,
            defined_at: Location {
                file: self.files[entry.file].path.clone(),
                line,
            },
        })
    }

    /// The named partitions definition the asset uses, if it names a known one.
    fn asset_partitions(
        &mut self,
        site: &Site<'_>,
        spec: &AssetSpec,
        known: &Known<'_>,
    ) -> Option<NamedPartitions> {
        let name = spec.partitions.as_ref()?;
        match known.partitions.get(name.get_ref()) {
            Some(def) => Some(NamedPartitions {
                name: name.get_ref().clone(),
                def: def.clone(),
            }),
            None => {
                self.report(
                    site.file,
                    name.span(),
                    &site.at("partitions"),
                    unknown_name(
                        "partitions definition",
                        name.get_ref(),
                        known.partitions.keys(),
                    ),
                );
                None
            }
        }
    }

    /// The dependencies that resolve (known, listed once, with a mapping between the two
    /// partitions definitions); the others are reported.
    fn asset_deps(
        &mut self,
        site: &Site<'_>,
        spec: &AssetSpec,
        known: &Known<'_>,
        partitions: Option<&NamedPartitions>,
    ) -> Vec<Dependency> {
        let file = site.file;
        let mut deps = Vec::with_capacity(spec.deps.len());
        let mut seen_deps = HashMap::new();
        for (i, dep) in spec.deps.iter().enumerate() {
            let field = site.at(&format!("deps[{i}]"));
            let name = dep.get_ref().asset();
            let Some(&upstream) = known.ids.get(name) else {
                let message = match AssetKey::parse(name) {
                    Err(e) => e.to_string(),
                    Ok(_) => unknown_name("dependency", name, known.ids.keys()),
                };
                self.report(file, dep.span(), &field, message);
                continue;
            };
            if seen_deps.insert(name.to_owned(), i).is_some() {
                self.report(
                    file,
                    dep.span(),
                    &field,
                    format!("\"{name}\" is listed twice in deps"),
                );
                continue;
            }
            let up_partitions = known.all[upstream]
                .value
                .partitions
                .as_ref()
                .and_then(|n| known.partitions.get(n.get_ref()));
            match PartitionMapping::resolve(
                dep.get_ref().mapping(),
                partitions.map(|p| &p.def),
                up_partitions,
            ) {
                Ok(mapping) => deps.push(Dependency {
                    upstream: AssetId(upstream as u32),
                    mapping,
                }),
                Err(message) => self.report(
                    file,
                    dep.span(),
                    &field,
                    format!(
                        "cannot map partitions of \"{}\" to \"{name}\": {message}",
                        site.key
                    ),
                ),
            }
        }
        deps
    }

    /// The storage target and pool an asset names exist.
    fn check_references(&mut self, site: &Site<'_>, spec: &AssetSpec, known: &Known<'_>) {
        let mut check =
            |field: &str, r: &Option<Spanned<String>>, names: Vec<&String>, what: &str| {
                if let Some(name) = r
                    && !names.iter().any(|n| *n == name.get_ref())
                {
                    self.report(
                        site.file,
                        name.span(),
                        &site.at(field),
                        unknown_name(what, name.get_ref(), names.into_iter()),
                    );
                }
            };
        check(
            "storage",
            &spec.storage,
            known.storage.keys().collect(),
            "storage target",
        );
        check("pool", &spec.pool, known.pools.keys().collect(), "pool");
    }

    /// The compute and observe commands, and which of them the asset may have.
    fn asset_commands(
        &mut self,
        site: &Site<'_>,
        spec: &AssetSpec,
    ) -> (Option<Command>, Option<Command>) {
        let file = site.file;
        let compute = spec
            .compute
            .as_ref()
            .and_then(|c| self.command(file, c, &site.at("compute")));
        let observe = spec
            .observe
            .as_ref()
            .and_then(|c| self.command(file, c, &site.at("observe")));
        match (spec.source, &spec.compute, &spec.observe) {
            (false, None, _) => self.report(file, spec.key.span(), &site.at("compute"), "a non-source asset needs a [asset.compute] command (or declare `source = true`)".into()),
            (true, Some(c), _) => self.report(file, c.span(), &site.at("compute"), "a source asset has no compute (its data arrives from outside); use `observe` to report its version".into()),
            (false, Some(_), Some(o)) => self.report(file, o.span(), &site.at("observe"), "only source assets are observed".into()),
            _ => {}
        }
        (compute, observe)
    }

    /// Automation, freshness, retries and backfill policies.
    fn asset_policies(&mut self, site: &Site<'_>, spec: &AssetSpec, partitioned: bool) -> Policies {
        let file = site.file;
        let automation = match &spec.automation {
            None => Automation::Manual,
            Some(a) => Automation::from_spec(a.get_ref()).unwrap_or_else(|m| {
                self.report(file, a.span(), &site.at("automation"), m);
                Automation::Manual
            }),
        };
        // A source is observed (once, then at each tick of a cron schedule), never built.
        let observable_cron = matches!(automation, Automation::Cron(_)) && spec.observe.is_some();
        if spec.source
            && !matches!(automation, Automation::Manual)
            && !observable_cron
            && let Some(a) = &spec.automation
        {
            self.report(
                file,
                a.span(),
                &site.at("automation"),
                "a source asset is not materialized by Cairn: its only automation is a cron schedule for its `observe` command".into(),
            );
        }
        let freshness =
            spec.freshness
                .as_ref()
                .and_then(|f| match FreshnessPolicy::from_spec(f.get_ref()) {
                    Ok(p) => Some(p),
                    Err(errors) => {
                        for (field, message) in errors {
                            let span = self.field_span_in(file, f.span(), &field);
                            let field = if field.is_empty() {
                                site.at("freshness")
                            } else {
                                site.at(&format!("freshness.{field}"))
                            };
                            self.report(file, span, &field, message);
                        }
                        None
                    }
                });
        let retries = spec.retries.as_ref().map_or(RetryPolicy::default(), |r| {
            let backoff = r
                .get_ref()
                .backoff
                .as_deref()
                .map(parse_duration)
                .transpose();
            match backoff {
                Ok(b) => RetryPolicy {
                    max: r.get_ref().max,
                    backoff: b.unwrap_or(RetryPolicy::default().backoff),
                },
                Err(m) => {
                    let span = self.field_span_in(file, r.span(), "backoff");
                    self.report(file, span, &site.at("retries.backoff"), m);
                    RetryPolicy::default()
                }
            }
        });
        let backfill = spec
            .backfill
            .as_ref()
            .map_or(BackfillPolicy::default(), |b| {
                BackfillPolicy::from_spec(b.get_ref()).unwrap_or_else(|(field, m)| {
                    let span = self.field_span_in(file, b.span(), &field);
                    self.report(file, span, &site.at(&format!("backfill.{field}")), m);
                    BackfillPolicy::default()
                })
            });
        if matches!(backfill, BackfillPolicy::SingleRun { .. })
            && !partitioned
            && let Some(b) = &spec.backfill
        {
            self.report(
                file,
                b.span(),
                &site.at("backfill"),
                "a backfill policy needs a partitioned asset".into(),
            );
        }
        Policies {
            automation,
            freshness,
            retries,
            backfill,
        }
    }

    /// Why a de-identification step's output is not PHI: required with
    /// `deidentifies = true`, refused without it.
    fn deidentification_reason(&mut self, site: &Site<'_>, spec: &AssetSpec) -> Option<String> {
        let deidentifies = spec.deidentifies.as_ref().is_some_and(|d| *d.get_ref());
        match (deidentifies, &spec.deidentification_reason) {
            (true, Some(reason)) if !reason.trim().is_empty() => Some(reason.clone()),
            (true, _) => {
                let span = spec
                    .deidentifies
                    .as_ref()
                    .map_or(spec.key.span(), |d| d.span());
                self.report(site.file, span, &site.at("deidentification_reason"), "`deidentifies = true` needs a `deidentification_reason` (how identifiers are removed)".into());
                None
            }
            (false, Some(_)) => {
                self.report(
                    site.file,
                    spec.key.span(),
                    &site.at("deidentification_reason"),
                    "a deidentification_reason without `deidentifies = true`".into(),
                );
                None
            }
            (false, None) => None,
        }
    }

    /// The contents of the asset's code files (part of its code version).
    fn code_contents(
        &mut self,
        site: &Site<'_>,
        spec: &AssetSpec,
        known: &Known<'_>,
    ) -> Vec<Vec<u8>> {
        let mut contents = Vec::with_capacity(spec.code.len());
        for (i, path) in spec.code.iter().enumerate() {
            match (known.read_code)(path.get_ref()) {
                Ok(bytes) => contents.push(bytes),
                Err(e) => self.report(
                    site.file,
                    path.span(),
                    &site.at(&format!("code[{i}]")),
                    format!("cannot read code file {:?}: {e}", path.get_ref()),
                ),
            }
        }
        contents
    }

    fn field_span_in(&self, file: usize, span: Range<usize>, field: &str) -> Range<usize> {
        let probe = Entry {
            file,
            span,
            value: (),
            canonical: serde_json::Value::Null,
        };
        self.field_span(&probe, field)
    }

    fn command(
        &mut self,
        file: usize,
        spec: &Spanned<CommandSpec>,
        field: &str,
    ) -> Option<Command> {
        let c = spec.get_ref();
        let program = match (&c.command, &c.shell) {
            (Some(argv), None) if !argv.is_empty() && !argv[0].is_empty() => {
                Some(Program::Argv(argv.clone()))
            }
            (Some(_), None) => {
                let span = self.field_span_in(file, spec.span(), "command");
                self.report(
                    file,
                    span,
                    &format!("{field}.command"),
                    "command is empty: give at least the program".into(),
                );
                None
            }
            (None, Some(line)) if !line.trim().is_empty() => Some(Program::Shell(line.clone())),
            (None, Some(_)) => {
                let span = self.field_span_in(file, spec.span(), "shell");
                self.report(
                    file,
                    span,
                    &format!("{field}.shell"),
                    "shell line is empty".into(),
                );
                None
            }
            (Some(_), Some(_)) => {
                self.report(
                    file,
                    spec.span(),
                    field,
                    "give either `command` (argv) or `shell`, not both".into(),
                );
                None
            }
            (None, None) => {
                self.report(
                    file,
                    spec.span(),
                    field,
                    "missing `command` (argv, e.g. [\"python3\", \"scripts/x.py\"]) or `shell`"
                        .into(),
                );
                None
            }
        };
        let timeout = match c.timeout.as_deref().map(parse_duration).transpose() {
            Ok(t) => t,
            Err(m) => {
                let span = self.field_span_in(file, spec.span(), "timeout");
                self.report(file, span, &format!("{field}.timeout"), m);
                return None;
            }
        };
        for name in c.env.keys().chain(&c.secrets) {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                self.report(
                    file,
                    spec.span(),
                    &format!("{field}.env"),
                    format!("{name:?} is not a valid environment variable name"),
                );
                return None;
            }
        }
        Some(Command {
            program: program?,
            env: c.env.clone(),
            secrets: c.secrets.clone(),
            cwd: PathBuf::from(c.cwd.as_deref().unwrap_or(".")),
            timeout,
        })
    }
}

/// The definition as written, with the partitions definition it names inlined (so that
/// changing a shared definition changes the code version of every asset using it).
/// Descriptive fields (description, owners, tags, policies, classification) are left
/// out: they do not change what the command builds.
fn canonical_definition(
    written: &serde_json::Value,
    partitions: &BTreeMap<String, serde_json::Value>,
) -> serde_json::Value {
    let mut canonical = serde_json::Map::new();
    if let Some(obj) = written.as_object() {
        for field in ["key", "source", "deps", "compute", "observe", "outputs"] {
            if let Some(v) = obj.get(field) {
                canonical.insert(field.to_owned(), v.clone());
            }
        }
        if let Some(name) = obj.get("partitions").and_then(|n| n.as_str()) {
            let mut def = partitions.get(name).cloned().unwrap_or_default();
            // A multi definition names its dimensions' definitions: inline them too.
            if let Some(dims) = def.get_mut("dimensions").and_then(|d| d.as_array_mut()) {
                for dim in dims {
                    let inner = dim
                        .get("partitions")
                        .and_then(|n| n.as_str())
                        .and_then(|n| partitions.get(n))
                        .cloned();
                    if let (Some(inner), Some(obj)) = (inner, dim.as_object_mut()) {
                        obj.insert("partitions".into(), inner);
                    }
                }
            }
            canonical.insert("partitions".into(), def);
        }
    }
    serde_json::Value::Object(canonical)
}
