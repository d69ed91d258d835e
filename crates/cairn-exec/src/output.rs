//! The output protocol: a command may append JSON lines to the file named by
//! `CAIRN_OUTPUT` to report its data version, metadata, log lines and asset check
//! results. The file is read as bytes and each line decoded on its own: a malformed line
//! is reported with its number and skipped, unless it may have been an error-severity
//! check (then the run cannot be trusted and fails). Data versions and metadata have size
//! limits and no control characters. See `docs/output-protocol.md`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One line of a command's output file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OutputLine {
    /// The version of the data written: equal versions mean equal data, so nothing
    /// downstream goes stale when a re-run reproduces it.
    DataVersion {
        value: String,
        /// For a run over a range: the partition this version is for (default: all of them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<String>,
    },
    /// Free metadata (row counts, schema, anything JSON), merged into the materialization.
    Metadata {
        values: serde_json::Map<String, serde_json::Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<String>,
    },
    /// A line for the run's log.
    Log {
        message: String,
        #[serde(default)]
        level: LogLevel,
    },
    /// The result of an asset check. A failed check of severity `error` fails the run.
    Check {
        name: String,
        passed: bool,
        #[serde(default)]
        severity: Severity,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        metadata: Option<serde_json::Map<String, serde_json::Value>>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    #[default]
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Warn,
    #[default]
    Error,
}

/// An asset check's result as recorded with the materialization.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckResult {
    pub name: String,
    pub passed: bool,
    pub severity: Severity,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}

/// What a command reported, folded; later lines win over earlier ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutputReport {
    /// The version for every partition of the run, when reported without a partition.
    pub data_version: Option<String>,
    pub data_versions: Vec<(String, String)>,
    pub metadata: serde_json::Map<String, serde_json::Value>,
    pub partition_metadata: Vec<(String, serde_json::Map<String, serde_json::Value>)>,
    pub logs: Vec<(LogLevel, String)>,
    pub checks: Vec<CheckResult>,
    /// Lines that could not be read, as "line N: why" (for the run's log).
    pub problems: Vec<String>,
    /// Why the output cannot be trusted or recorded: any of these fails the run.
    pub violations: Vec<String>,
}

/// The longest data version, in bytes.
pub const MAX_DATA_VERSION: usize = 1024;
/// The most metadata one partition's materialization takes, in bytes of JSON.
pub const MAX_METADATA: usize = 64 << 10;
/// The most of an output file that is read; a longer one fails the run.
pub const MAX_OUTPUT_FILE: usize = 16 << 20;

impl OutputReport {
    /// Reads the whole output file's text (see [`OutputReport::parse_bytes`]).
    pub fn parse(text: &str) -> Self {
        Self::parse_bytes(text.as_bytes())
    }

    /// Reads the output file's bytes, each line decoded on its own.
    pub fn parse_bytes(bytes: &[u8]) -> Self {
        let mut report = Self::default();
        for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let n = n + 1;
            let raw = raw.trim_ascii();
            if raw.is_empty() {
                continue;
            }
            let why = match std::str::from_utf8(raw) {
                Ok(text) => match serde_json::from_str::<OutputLine>(text) {
                    Ok(line) => {
                        report.apply(line);
                        continue;
                    }
                    Err(e) => e.to_string(),
                },
                Err(e) => format!("not UTF-8 ({e})"),
            };
            let text = String::from_utf8_lossy(raw);
            report
                .problems
                .push(format!("line {n}: {why}: {}", truncate(&text, 200)));
            if may_be_error_check(&text) {
                report.violations.push(format!(
                    "output file line {n} may be an asset check of severity error but cannot be read ({why}); the run's output cannot be trusted"
                ));
            }
        }
        report.check_limits();
        report
    }

    /// Data versions and metadata that cannot be recorded.
    fn check_limits(&mut self) {
        let mut bad = Vec::new();
        let versions = self
            .data_version
            .iter()
            .map(|v| (None, v))
            .chain(self.data_versions.iter().map(|(p, v)| (Some(p), v)));
        for (partition, v) in versions {
            let of = partition.map_or(String::new(), |p| format!(" for partition {p:?}"));
            if v.len() > MAX_DATA_VERSION {
                bad.push(format!(
                    "the data version{of} is {} bytes; at most {MAX_DATA_VERSION} are allowed (report a hash of the data)",
                    v.len()
                ));
            }
            if v.is_empty() {
                bad.push(format!("the data version{of} is empty"));
            }
            if v.chars().any(char::is_control) {
                bad.push(format!(
                    "the data version{of} {:?} contains a control character",
                    truncate(v, 80)
                ));
            }
        }
        for p in self
            .data_versions
            .iter()
            .map(|(p, _)| p)
            .chain(self.partition_metadata.iter().map(|(p, _)| p))
        {
            if p.chars().any(char::is_control) {
                bad.push(format!(
                    "the partition {:?} contains a control character",
                    truncate(p, 80)
                ));
            }
        }
        let metadata = std::iter::once((None, &self.metadata))
            .chain(self.partition_metadata.iter().map(|(p, m)| (Some(p), m)));
        for (partition, m) in metadata {
            let of = partition.map_or(String::new(), |p| format!(" for partition {p:?}"));
            let size = serde_json::to_string(m).map_or(0, |t| t.len());
            if size > MAX_METADATA {
                bad.push(format!(
                    "the metadata{of} is {size} bytes of JSON; at most {MAX_METADATA} are allowed"
                ));
            }
            if let Some(k) = m.keys().find(|k| k.chars().any(char::is_control)) {
                bad.push(format!(
                    "the metadata key{of} {:?} contains a control character",
                    truncate(k, 80)
                ));
            }
        }
        self.violations.extend(bad);
    }

    fn apply(&mut self, line: OutputLine) {
        match line {
            OutputLine::DataVersion { value, partition } => match partition {
                None => self.data_version = Some(value),
                Some(p) => {
                    self.data_versions.retain(|(q, _)| *q != p);
                    self.data_versions.push((p, value));
                }
            },
            OutputLine::Metadata { values, partition } => match partition {
                None => self.metadata.extend(values),
                Some(p) => match self.partition_metadata.iter_mut().find(|(q, _)| *q == p) {
                    Some((_, m)) => m.extend(values),
                    None => self.partition_metadata.push((p, values)),
                },
            },
            OutputLine::Log { message, level } => self.logs.push((level, message)),
            OutputLine::Check {
                name,
                passed,
                severity,
                description,
                metadata,
            } => {
                self.checks.retain(|c| c.name != name);
                self.checks.push(CheckResult {
                    name,
                    passed,
                    severity,
                    description,
                    metadata,
                });
            }
        }
    }

    /// The data version reported for `partition`, if any.
    pub fn data_version_of(&self, partition: &str) -> Option<&str> {
        self.data_versions
            .iter()
            .find(|(p, _)| p == partition)
            .map(|(_, v)| v.as_str())
            .or(self.data_version.as_deref())
    }

    /// Metadata for `partition`: the run's, overlaid with the partition's own.
    pub fn metadata_of(&self, partition: &str) -> serde_json::Map<String, serde_json::Value> {
        let mut out = self.metadata.clone();
        if let Some((_, m)) = self.partition_metadata.iter().find(|(p, _)| p == partition) {
            out.extend(m.clone());
        }
        out
    }

    /// Names of failed checks of severity `error`.
    pub fn blocking_failures(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| !c.passed && c.severity == Severity::Error)
            .map(|c| c.name.as_str())
            .collect()
    }
}

/// Whether an unreadable line may have been a check of severity `error` (the default):
/// it names the `check` type and does not say `warn`.
fn may_be_error_check(text: &str) -> bool {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_str::<serde_json::Value>(text) {
        return o.get("type").and_then(|t| t.as_str()) == Some("check")
            && o.get("severity").and_then(|s| s.as_str()) != Some("warn");
    }
    text.contains("check") && !text.contains("warn")
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The JSON Schema of one output line (`schemas/output.schema.json`).
pub fn output_line_schema_json() -> String {
    cairn_model::schema::pretty(&schemars::schema_for!(OutputLine))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_versions_metadata_logs_and_checks() {
        let text = r#"
{"type": "data_version", "value": "v1"}
{"type": "metadata", "values": {"row_count": 10}}
{"type": "metadata", "values": {"columns": ["a"]}, "partition": "2025-01-02"}
{"type": "data_version", "value": "v2", "partition": "2025-01-02"}
{"type": "log", "message": "hello", "level": "warn"}
{"type": "check", "name": "no_nulls", "passed": false}
{"type": "check", "name": "fresh_enough", "passed": false, "severity": "warn"}
{"type": "data_version", "value": "v3"}
"#;
        let r = OutputReport::parse(text);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.data_version_of("2025-01-01"), Some("v3"), "the last wins");
        assert_eq!(r.data_version_of("2025-01-02"), Some("v2"));
        assert_eq!(r.metadata_of("2025-01-01").len(), 1);
        assert_eq!(r.metadata_of("2025-01-02").len(), 2);
        assert_eq!(r.logs, [(LogLevel::Warn, "hello".to_owned())]);
        assert_eq!(r.blocking_failures(), ["no_nulls"]);
    }

    #[test]
    fn malformed_lines_are_reported_with_their_number() {
        let r = OutputReport::parse(
            "{\"type\": \"data_version\", \"value\": \"v\"}\nnot json\n{\"type\": \"nope\"}\n{\"type\": \"data_version\"}\n",
        );
        assert_eq!(r.data_version.as_deref(), Some("v"));
        assert_eq!(r.problems.len(), 3, "{:?}", r.problems);
        assert!(r.problems[0].starts_with("line 2: "), "{}", r.problems[0]);
        assert!(
            r.problems[1].contains("unknown variant `nope`"),
            "{}",
            r.problems[1]
        );
        assert!(
            r.problems[2].contains("missing field `value`"),
            "{}",
            r.problems[2]
        );
    }

    /// Invalid UTF-8 on one line spoils only that line: the failing check after it counts.
    #[test]
    fn each_line_is_decoded_on_its_own() {
        let mut bytes = b"{\"type\": \"data_version\", \"value\": \"v1\"}\n\xff\xfe\n".to_vec();
        bytes.extend_from_slice(b"{\"type\": \"check\", \"name\": \"rows\", \"passed\": false}\n");
        let r = OutputReport::parse_bytes(&bytes);
        assert_eq!(r.data_version.as_deref(), Some("v1"));
        assert_eq!(r.blocking_failures(), ["rows"]);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert!(
            r.problems[0].starts_with("line 2: not UTF-8"),
            "{}",
            r.problems[0]
        );
        assert!(r.violations.is_empty(), "{:?}", r.violations);
    }

    /// A check that cannot be read may have been a failing error check: not trusted.
    #[test]
    fn an_unreadable_error_check_is_a_violation_and_a_warn_one_is_not() {
        let r = OutputReport::parse_bytes(
            b"{\"type\": \"check\", \"name\": \"rows\", \"passed\": \xff}\n",
        );
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(
            r.violations[0].starts_with("output file line 1 may be an asset check"),
            "{}",
            r.violations[0]
        );
        let r = OutputReport::parse(r#"{"type": "check", "name": "rows"}"#);
        assert_eq!(
            r.violations.len(),
            1,
            "a check without `passed`: {:?}",
            r.violations
        );
        let r = OutputReport::parse(r#"{"type": "check", "name": "rows", "severity": "warn"}"#);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.problems.len(), 1);
        let r = OutputReport::parse("not json\n");
        assert!(r.violations.is_empty(), "{:?}", r.violations);
    }

    #[test]
    fn control_characters_and_oversized_values_are_violations() {
        let r = OutputReport::parse(r#"{"type": "data_version", "value": "a\tb"}"#);
        assert_eq!(r.violations.len(), 1, "{:?}", r.violations);
        assert!(
            r.violations[0].contains("control character"),
            "{}",
            r.violations[0]
        );
        let r = OutputReport::parse(
            r#"{"type": "data_version", "value": "x\u0000", "partition": "p"}"#,
        );
        assert!(
            r.violations[0].contains("for partition \"p\""),
            "{:?}",
            r.violations
        );
        let big = "v".repeat(MAX_DATA_VERSION + 1);
        let r = OutputReport::parse(&format!(r#"{{"type": "data_version", "value": "{big}"}}"#));
        assert!(
            r.violations[0].contains("at most 1024"),
            "{:?}",
            r.violations
        );
        let ok = "v".repeat(MAX_DATA_VERSION);
        assert!(
            OutputReport::parse(&format!(r#"{{"type": "data_version", "value": "{ok}"}}"#))
                .violations
                .is_empty()
        );
        let big = "m".repeat(MAX_METADATA);
        let r = OutputReport::parse(&format!(
            r#"{{"type": "metadata", "values": {{"a": "{big}"}}}}"#
        ));
        assert!(
            r.violations[0].contains("metadata is"),
            "{:?}",
            r.violations
        );
        let r = OutputReport::parse(r#"{"type": "metadata", "values": {"a\nb": 1}}"#);
        assert!(
            r.violations[0].contains("metadata key"),
            "{:?}",
            r.violations
        );
    }

    #[test]
    fn committed_output_schema_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../schemas/output.schema.json"
        );
        let current = output_line_schema_json();
        if std::env::var_os("CAIRN_UPDATE_SCHEMAS").is_some() {
            std::fs::write(path, &current).unwrap();
            return;
        }
        let committed = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            committed == current,
            "schemas/output.schema.json is out of date: run \
             CAIRN_UPDATE_SCHEMAS=1 cargo test -p cairn-exec committed_output_schema"
        );
    }
}
