//! The environment a run's command sees (DESIGN.md, "Runs"): what to build, where its
//! inputs are, where to report, plus the asset's own variables and secrets.
//!
//! The child does not inherit Cairn's whole environment: only a base that programs need
//! to work (`PATH`, `HOME`, locale, `TZ`, temp dir, Python's), `CAIRN_*` settings other
//! than the store's URL, and the secrets the asset names. A secret is never logged;
//! its value is masked in the run's log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cairn_model::partitions::{PartitionEnv, PartitionSet};
use cairn_model::{AssetGraph, AssetId};

use crate::Error;

/// Variables of Cairn's own environment passed to every command.
const BASE: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "SHELL",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "PYTHONHOME",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// `CAIRN_*` variables of Cairn's own that never reach commands.
const PRIVATE: &[&str] = &[
    "CAIRN_STORE",
    "CAIRN_TEST_DATABASE_URL",
    "CAIRN_SECRETS_FILE",
];

/// Secret values, from Cairn's environment or a `KEY=VALUE` file; the environment wins.
#[derive(Clone, Default)]
pub struct Secrets {
    from_file: BTreeMap<String, String>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values must never reach a log.
        f.debug_struct("Secrets")
            .field(
                "names_from_file",
                &self.from_file.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Secrets {
    /// Reads `KEY=VALUE` lines (blank lines and `#` comments skipped).
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut from_file = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(Error::SecretsFile {
                    path: path.to_owned(),
                    line: n + 1,
                    reason: "expected KEY=VALUE".into(),
                });
            };
            from_file.insert(key.trim().to_owned(), value.trim().to_owned());
        }
        Ok(Self { from_file })
    }

    pub fn get(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.from_file.get(name).cloned())
    }
}

/// What a run builds, resolved against the definitions.
#[derive(Debug, Clone)]
pub struct RunTarget {
    pub asset: AssetId,
    /// Partition indices (`0..1` for an unpartitioned asset).
    pub partitions: PartitionSet,
    /// Their keys, in order ("" for an unpartitioned asset).
    pub keys: Vec<String>,
}

impl RunTarget {
    /// Resolves a run's partition (or `first..=last` range) to indices and keys.
    pub fn resolve(
        graph: &AssetGraph,
        asset: AssetId,
        partition: Option<&str>,
        range: Option<(&str, &str)>,
        env: PartitionEnv<'_>,
    ) -> Result<Self, String> {
        let def = graph.asset(asset);
        let Some(parts) = &def.partitions else {
            if partition.is_some_and(|p| !p.is_empty()) {
                return Err(format!("asset {} is not partitioned", def.key));
            }
            return Ok(Self {
                asset,
                partitions: PartitionSet::single(0),
                keys: vec![String::new()],
            });
        };
        let index = |key: &str| {
            parts
                .def
                .index_of(key, env)
                .ok_or_else(|| format!("{key:?} is not a partition of {}", def.key))
        };
        let (first, last) = match (range, partition) {
            (Some((a, b)), _) => (index(a)?, index(b)?),
            (None, Some(p)) => (index(p)?, index(p)?),
            (None, None) => {
                return Err(format!(
                    "asset {} is partitioned: a run needs a partition",
                    def.key
                ));
            }
        };
        let (first, last) = (first.min(last), first.max(last));
        let keys = (first..=last)
            .map(|i| parts.def.key_of(i, env).unwrap_or_default())
            .collect();
        Ok(Self {
            asset,
            partitions: PartitionSet::from_range(first..last + 1),
            keys,
        })
    }
}

/// The variables for one run; `secret_values` lists what to mask in its log.
#[derive(Debug, Default)]
pub struct RunEnvironment {
    pub vars: Vec<(String, String)>,
    pub secret_values: Vec<String>,
    pub cwd: PathBuf,
}

pub struct EnvRequest<'a> {
    pub graph: &'a AssetGraph,
    pub target: &'a RunTarget,
    pub env: PartitionEnv<'a>,
    pub assets_dir: &'a Path,
    pub run_id: &'a str,
    pub attempt: u32,
    pub output_path: &'a Path,
    pub secrets: &'a Secrets,
}

/// The name of the variable that locates an upstream: `ingest/adt` -> `CAIRN_UPSTREAM_INGEST__ADT`.
pub fn upstream_var(key: &str) -> String {
    format!(
        "CAIRN_UPSTREAM_{}",
        key.to_ascii_uppercase().replace('/', "__")
    )
}

pub fn build(req: &EnvRequest<'_>) -> Result<RunEnvironment, Error> {
    let asset = req.graph.asset(req.target.asset);
    let command = command_of(asset).ok_or_else(|| Error::NoCompute(asset.key.to_string()))?;
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in std::env::vars() {
        let passes = BASE.contains(&name.as_str())
            || name.starts_with("LC_")
            || (name.starts_with("CAIRN_") && !PRIVATE.contains(&name.as_str()));
        if passes {
            vars.insert(name, value);
        }
    }
    let mut set = |k: &str, v: String| {
        vars.insert(k.to_owned(), v);
    };
    set("CAIRN_ASSET", asset.key.to_string());
    set("CAIRN_RUN_ID", req.run_id.to_owned());
    set("CAIRN_ATTEMPT", req.attempt.to_string());
    set("CAIRN_OUTPUT", req.output_path.display().to_string());
    set("CAIRN_ASSETS_DIR", req.assets_dir.display().to_string());
    let keys = &req.target.keys;
    if let Some(parts) = &asset.partitions {
        if keys.len() == 1 {
            set("CAIRN_PARTITION", keys[0].clone());
        }
        set("CAIRN_PARTITION_FIRST", keys[0].clone());
        set("CAIRN_PARTITION_LAST", keys[keys.len() - 1].clone());
        set("CAIRN_PARTITION_COUNT", keys.len().to_string());
        let (first, last) = (
            req.target.partitions.first().unwrap_or(0),
            req.target.partitions.last().unwrap_or(0),
        );
        if let (Some((start, _)), Some((_, end))) =
            (parts.def.window(first), parts.def.window(last))
        {
            set(
                "CAIRN_PARTITION_START",
                start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
            set(
                "CAIRN_PARTITION_END",
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            );
        }
    }
    let mut upstreams = Vec::new();
    for dep in &asset.deps {
        let up = req.graph.asset(dep.upstream);
        upstreams.push(up.key.to_string());
        let location = if !up.outputs.is_empty() {
            up.outputs
                .iter()
                .map(|o| req.assets_dir.join(o).display().to_string())
                .collect::<Vec<_>>()
                .join(",")
        } else {
            up.storage.clone().unwrap_or_default()
        };
        let var = upstream_var(up.key.as_str());
        if let Some(up_parts) = &up.partitions {
            let read = dep.mapping.upstream_of_set(&req.target.partitions, req.env);
            let key = |i| up_parts.def.key_of(i, req.env).unwrap_or_default();
            let ranges: Vec<String> = read
                .ranges()
                .iter()
                .map(|r| {
                    if r.len() == 1 {
                        key(r.start)
                    } else {
                        format!("{}..{}", key(r.start), key(r.end - 1))
                    }
                })
                .collect();
            set(&format!("{var}_PARTITIONS"), ranges.join(","));
        }
        set(&var, location);
    }
    set("CAIRN_UPSTREAMS", upstreams.join(","));
    for (k, v) in &command.env {
        set(k, v.clone());
    }
    let mut secret_values = Vec::new();
    for name in &command.secrets {
        let value = req
            .secrets
            .get(name)
            .ok_or_else(|| Error::MissingSecret(name.clone()))?;
        if !value.is_empty() {
            secret_values.push(value.clone());
        }
        set(name, value);
    }
    Ok(RunEnvironment {
        vars: vars.into_iter().collect(),
        secret_values,
        cwd: req.assets_dir.join(&command.cwd),
    })
}

/// What a run of the asset executes: its compute, or a source's observe command.
pub fn command_of(asset: &cairn_model::AssetDef) -> Option<&cairn_model::Command> {
    asset.compute.as_ref().or(asset.observe.as_ref())
}

/// Replaces every secret value in a log line with `***`. Everything a run writes into its
/// log, its error and its events goes through here (or [`mask_json`]).
pub fn mask(line: &str, secrets: &[String]) -> String {
    let mut out = line.to_owned();
    for s in secrets {
        if !s.is_empty() && out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "***");
        }
    }
    out
}

/// [`mask`] over every string (and object key) of a JSON value.
pub fn mask_json(value: &mut serde_json::Value, secrets: &[String]) {
    match value {
        serde_json::Value::String(s) => *s = mask(s, secrets),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| mask_json(v, secrets)),
        serde_json::Value::Object(map) => {
            let entries = std::mem::take(map);
            for (k, mut v) in entries {
                mask_json(&mut v, secrets);
                map.insert(mask(&k, secrets), v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_occurrence() {
        let s = vec!["hunter2".to_owned()];
        assert_eq!(mask("pw=hunter2 again hunter2", &s), "pw=*** again ***");
        assert_eq!(mask("nothing here", &s), "nothing here");
    }

    #[test]
    fn secrets_file_lines_name_their_problem() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secrets.env");
        std::fs::write(&path, "# comment\nCAIRN_TEST_ONLY_A=1\n\noops\n").unwrap();
        let err = Secrets::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("secrets.env:4"), "{err}");
        assert!(
            !err.contains("CAIRN_TEST_ONLY_A=1"),
            "values stay out of errors: {err}"
        );
        std::fs::write(&path, "CAIRN_TEST_ONLY_B = two\n").unwrap();
        let s = Secrets::from_file(&path).unwrap();
        assert_eq!(s.get("CAIRN_TEST_ONLY_B").as_deref(), Some("two"));
        assert!(
            !format!("{s:?}").contains("two"),
            "Debug never shows values"
        );
    }

    #[test]
    fn upstream_variables_are_shell_names() {
        assert_eq!(
            upstream_var("ingest/adt_encounters"),
            "CAIRN_UPSTREAM_INGEST__ADT_ENCOUNTERS"
        );
    }
}
