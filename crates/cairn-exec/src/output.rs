//! The output protocol: a command may append JSON lines to the file named by
//! `CAIRN_OUTPUT` to report its data version, metadata, log lines and asset check
//! results. A malformed line is reported, never fatal. See `docs/output-protocol.md`.

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
}

impl OutputReport {
    /// Reads the whole output file's text.
    pub fn parse(text: &str) -> Self {
        let mut report = Self::default();
        for (n, raw) in text.lines().enumerate() {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            match serde_json::from_str::<OutputLine>(raw) {
                Ok(line) => report.apply(line),
                Err(e) => {
                    report
                        .problems
                        .push(format!("line {}: {e}: {}", n + 1, truncate(raw, 200)))
                }
            }
        }
        report
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
