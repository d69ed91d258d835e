//! OpenLineage settings: the `[openlineage]` table of a definitions file, conventionally
//! `assets/warehouse.toml` (docs/openlineage.md).
//!
//! The table says *where* run events go and under which namespace; building and sending
//! them is the launcher's (`cairn-exec/src/lineage/`). Like the alert channels, an API key
//! is *named* here (`api_key_secret`) and read from the secrets file or environment when
//! an event is sent, never written in the definitions.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// How long one HTTP POST of an event may take when `timeout` is not written.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `[openlineage]`: where every run's START / COMPLETE / FAIL / ABORT events go. Write
/// exactly one transport: `url` or `file`.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenLineageSpec {
    /// The namespace of Cairn's jobs and datasets, e.g. "cairn://hospital".
    #[schemars(with = "String")]
    pub namespace: Spanned<String>,
    /// HTTP transport: the endpoint events are POSTed to, e.g. Marquez's
    /// "http://localhost:5000/api/v1/lineage". https, or http to a loopback host; no
    /// credentials and no query string (use `api_key_secret`).
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    /// HTTP transport: the name of the secret (secrets file or environment) holding an API
    /// key, sent as `Authorization: Bearer KEY`.
    #[schemars(with = "Option<String>")]
    pub api_key_secret: Option<Spanned<String>>,
    /// HTTP transport: how long one POST may take, e.g. "5s"; default 10s.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// File transport: a JSON-lines file events are appended to: absolute, or relative to
    /// the assets directory and outside it, e.g. "../lineage.jsonl" (every file in the
    /// assets directory is watched for changes to the definitions).
    #[schemars(with = "Option<String>")]
    pub file: Option<Spanned<String>>,
}

/// The validated settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLineageConfig {
    pub namespace: String,
    pub transport: LineageTransport,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineageTransport {
    Http {
        /// Checked: http(s), no user info, no query string; http only to loopback.
        url: String,
        /// A secret's name, not its value.
        api_key_secret: Option<String>,
        timeout: Duration,
    },
    File {
        /// As written: relative paths are relative to the assets directory (and outside it).
        path: PathBuf,
    },
}

/// A problem with the table: the field (below `openlineage`) and what is wrong. The
/// loader turns it into a `Diagnostic` with the file and line of the field's span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: &'static str,
    pub span: std::ops::Range<usize>,
    pub message: String,
}

impl OpenLineageSpec {
    /// Checks the table; `whole` is its span, for problems of no single field.
    pub fn build(
        &self,
        whole: std::ops::Range<usize>,
    ) -> Result<OpenLineageConfig, Vec<SpecError>> {
        let mut errors = Vec::new();
        let namespace = self.namespace.get_ref().trim();
        if namespace.is_empty()
            || namespace
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            errors.push(SpecError {
                field: "namespace",
                span: self.namespace.span(),
                message: "must be a non-empty name without spaces, e.g. \"cairn://hospital\""
                    .into(),
            });
        }
        let transport = match (&self.url, &self.file) {
            (Some(_), Some(file)) => {
                errors.push(SpecError {
                    field: "file",
                    span: file.span(),
                    message: "write either `url` (HTTP) or `file` (JSON lines), not both".into(),
                });
                None
            }
            (None, None) => {
                errors.push(SpecError {
                    field: "url",
                    span: whole,
                    message: "say where events go: `url = \"https://...\"` (HTTP) or `file = \"lineage.jsonl\"` (JSON lines)".into(),
                });
                None
            }
            (Some(url), None) => {
                if let Err(message) = crate::alerts::check_plain_url(url.get_ref()) {
                    // The alert channels' rule, whose advice names their own field.
                    let message = message
                        .replace(
                            "use `url_secret` for it",
                            "name the key with `api_key_secret` instead",
                        )
                        .replace(
                            "use `url_secret`",
                            "name the key with `api_key_secret` instead",
                        );
                    errors.push(SpecError {
                        field: "url",
                        span: url.span(),
                        message,
                    });
                }
                let timeout = match &self.timeout {
                    None => DEFAULT_TIMEOUT,
                    Some(raw) => match crate::policy::parse_duration(raw.get_ref()) {
                        Ok(d) if !d.is_zero() => d,
                        Ok(_) => {
                            errors.push(SpecError {
                                field: "timeout",
                                span: raw.span(),
                                message: "must be longer than 0s".into(),
                            });
                            DEFAULT_TIMEOUT
                        }
                        Err(message) => {
                            errors.push(SpecError {
                                field: "timeout",
                                span: raw.span(),
                                message,
                            });
                            DEFAULT_TIMEOUT
                        }
                    },
                };
                if let Some(name) = &self.api_key_secret
                    && !is_secret_name(name.get_ref())
                {
                    errors.push(SpecError {
                        field: "api_key_secret",
                        span: name.span(),
                        // The value is not echoed: it may be the key itself, written by mistake.
                        message: "must be a secret's name (A-Z, 0-9 and '_', as in the secrets file), not its value".into(),
                    });
                }
                Some(LineageTransport::Http {
                    url: url.get_ref().clone(),
                    api_key_secret: self.api_key_secret.as_ref().map(|n| n.get_ref().clone()),
                    timeout,
                })
            }
            (None, Some(file)) => {
                for (field, value) in [
                    ("api_key_secret", &self.api_key_secret),
                    ("timeout", &self.timeout),
                ] {
                    if let Some(v) = value {
                        errors.push(SpecError {
                            field,
                            span: v.span(),
                            message: format!(
                                "`{field}` applies to the HTTP transport (`url`), not to `file`"
                            ),
                        });
                    }
                }
                let path = file.get_ref();
                if path.trim().is_empty() || path.contains('\0') {
                    errors.push(SpecError {
                        field: "file",
                        span: file.span(),
                        message: "must be a file path, e.g. \"../lineage.jsonl\"".into(),
                    });
                } else if inside_assets_dir(Path::new(path)) {
                    errors.push(SpecError {
                        field: "file",
                        span: file.span(),
                        message: format!(
                            "{path:?} is inside the assets directory, where every file is watched for changes to the definitions (each event would reload them): write it outside, e.g. \"../lineage.jsonl\", or as an absolute path"
                        ),
                    });
                }
                Some(LineageTransport::File {
                    path: PathBuf::from(path),
                })
            }
        };
        match transport {
            Some(transport) if errors.is_empty() => Ok(OpenLineageConfig {
                namespace: namespace.to_owned(),
                transport,
            }),
            _ => Err(errors),
        }
    }
}

/// Whether a relative path stays within the directory it is relative to (lexically: the
/// model reads no file system). Absolute paths are the user's to place.
fn inside_assets_dir(path: &Path) -> bool {
    if path.is_absolute() {
        return false;
    }
    let mut depth: usize = 0;
    for c in path.components() {
        match c {
            Component::ParentDir if depth == 0 => return false,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    true
}

/// A secret's name as the secrets file writes it: `A-Z`, `0-9`, `_`, not starting with a digit.
fn is_secret_name(n: &str) -> bool {
    n.chars()
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && n.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}
