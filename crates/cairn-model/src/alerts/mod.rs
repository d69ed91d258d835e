//! Alert rules: `alerts.toml` at the top of the assets directory (docs/alerts.md).
//!
//! The file names channels (where alerts go) and rules (which events, for which assets, to
//! which channels). It is validated with every other definition: [`crate::loader::load_dir`]
//! checks it against the graph, so `cairn validate` reports its problems with file, line
//! and field, and a server never starts with rules that name an unknown channel or asset.
//!
//! Secrets (SMTP credentials, webhook URLs carrying tokens) are *named* here, never
//! written: their values are read at delivery time from the secrets file or the
//! environment, so a missing secret is a delivery failure (alerted as
//! `delivery_failing`), not a load error. That keeps definitions shareable and lets the
//! example warehouse validate on a machine without the secrets.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use crate::asset::{AssetId, Location};
use crate::diagnostic::{Diagnostic, LineIndex};
use crate::graph::AssetGraph;
use crate::loader::Diagnostics;
use crate::selection::Selection;

/// The alerts file's name, directly under the assets directory.
pub const ALERTS_FILE: &str = "alerts.toml";

/// Alerts sent per channel per sliding hour when `rate_limit` is not written: enough for a
/// bad night, few enough that one broken upstream cannot flood a pager (the rest go into
/// a digest).
pub const DEFAULT_MAX_PER_HOUR: u32 = 30;

// ---------------------------------------------------------------------------------------
// The file as written (serde + JSON Schema).

/// `alerts.toml`. Every entry is optional; no file means no alerts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Cairn alert rules file")]
pub struct AlertsFileSpec {
    /// Named channels: where alerts are delivered.
    #[serde(default)]
    pub channel: BTreeMap<String, ChannelSpec>,
    /// Rules: which events, for which assets, to which channels.
    #[serde(default)]
    pub rule: Vec<RuleSpec>,
}

const ALERTS_FILE_KEYS: [&str; 2] = ["channel", "rule"];

/// One channel. Fields that do not apply to its `kind` are refused.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    pub kind: ChannelKindSpec,
    /// Email: the SMTP server's host name.
    #[schemars(with = "Option<String>")]
    pub smtp_host: Option<Spanned<String>>,
    /// Email: the port; default 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub smtp_port: Option<u16>,
    /// Email: how the connection is protected; default `starttls`. `none` is allowed only
    /// for a loopback host (a local relay).
    #[schemars(with = "Option<SmtpTls>")]
    pub tls: Option<Spanned<SmtpTls>>,
    /// Email: the sender address.
    #[schemars(with = "Option<String>")]
    pub from: Option<Spanned<String>>,
    /// Email: recipient addresses (at least one).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub to: Vec<Spanned<String>>,
    /// Email: the name of the secret holding the SMTP user name.
    #[schemars(with = "Option<String>")]
    pub username_secret: Option<Spanned<String>>,
    /// Email: the name of the secret holding the SMTP password.
    #[schemars(with = "Option<String>")]
    pub password_secret: Option<Spanned<String>>,
    /// Webhooks: the name of the secret holding the URL (Slack and Teams URLs are
    /// credentials: they must come from a secret).
    #[schemars(with = "Option<String>")]
    pub url_secret: Option<Spanned<String>>,
    /// Generic webhooks only: a URL without credentials (no user info, no query string);
    /// `http` only for a loopback host.
    #[schemars(with = "Option<String>")]
    pub url: Option<Spanned<String>>,
    /// How long one delivery may take, e.g. "10s"; default 10s for webhooks, 30s for email.
    #[schemars(with = "Option<String>")]
    pub timeout: Option<Spanned<String>>,
    /// At most this many alerts per sliding hour; the rest are summarized in a digest.
    pub rate_limit: Option<RateLimitSpec>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKindSpec {
    Email,
    Webhook,
    Slack,
    Teams,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required (never falls back).
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No encryption: loopback hosts only.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// At least 2: one slot per hour is kept for the digest.
    pub max_per_hour: u32,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Lowercase letters, digits and '_'; unique in the file.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// The events this rule alerts on.
    #[schemars(with = "Vec<AlertEvent>")]
    pub events: Vec<Spanned<AlertEvent>>,
    /// The assets it covers, in the selection syntax (`cairn status --select`); default
    /// `*`. Events about no asset (backfills, the reconciler, delivery) ignore it.
    #[schemars(with = "Option<String>")]
    pub select: Option<Spanned<String>>,
    /// Channel names.
    #[schemars(with = "Vec<String>")]
    pub channels: Vec<Spanned<String>>,
    /// Whether to send a resolve message when the incident clears; default true.
    pub resolve: Option<bool>,
}

/// What can be alerted on.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AlertEvent {
    /// A partition failed with no retries left.
    RunFailed,
    /// An asset's freshness went to `warn`.
    FreshnessWarn,
    /// An asset's freshness went to `breach`.
    FreshnessBreach,
    /// A backfill ended with every partition done.
    BackfillFinished,
    /// A backfill ended with partitions failed for good.
    BackfillFailed,
    /// The reconciler has not ticked for too long.
    ReconcilerStalled,
    /// Alerts to a channel keep failing.
    DeliveryFailing,
}

impl AlertEvent {
    pub const ALL: [AlertEvent; 7] = [
        AlertEvent::RunFailed,
        AlertEvent::FreshnessWarn,
        AlertEvent::FreshnessBreach,
        AlertEvent::BackfillFinished,
        AlertEvent::BackfillFailed,
        AlertEvent::ReconcilerStalled,
        AlertEvent::DeliveryFailing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertEvent::RunFailed => "run_failed",
            AlertEvent::FreshnessWarn => "freshness_warn",
            AlertEvent::FreshnessBreach => "freshness_breach",
            AlertEvent::BackfillFinished => "backfill_finished",
            AlertEvent::BackfillFailed => "backfill_failed",
            AlertEvent::ReconcilerStalled => "reconciler_stalled",
            AlertEvent::DeliveryFailing => "delivery_failing",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == raw)
    }

    /// Whether the event concerns one asset (and so a rule's selection applies).
    pub fn concerns_asset(self) -> bool {
        matches!(
            self,
            AlertEvent::RunFailed | AlertEvent::FreshnessWarn | AlertEvent::FreshnessBreach
        )
    }

    /// Whether the event opens an incident that later clears (a failure until the
    /// partition is materialized again, a freshness status until fresh...). A finished
    /// backfill is news, not an incident: nothing resolves it.
    pub fn has_resolution(self) -> bool {
        !matches!(self, AlertEvent::BackfillFinished)
    }
}

impl std::fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------
// Validated definitions.

/// Every channel and rule of `alerts.toml`, validated against the graph.
#[derive(Debug, Clone, Default)]
pub struct AlertConfig {
    pub channels: BTreeMap<String, ChannelDef>,
    pub rules: Vec<AlertRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelDef {
    pub name: String,
    pub transport: Transport,
    pub timeout: Duration,
    pub max_per_hour: u32,
    pub defined_at: Location,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    Email(EmailDef),
    Webhook {
        format: WebhookFormat,
        url: UrlSource,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailDef {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub from: String,
    pub to: Vec<String>,
    pub username_secret: Option<String>,
    pub password_secret: Option<String>,
}

/// The body a webhook receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    /// Cairn's own versioned JSON (docs/alerts.md).
    Json,
    /// Slack incoming webhooks (`text` and `blocks`).
    Slack,
    /// Microsoft Teams incoming webhooks (a MessageCard).
    Teams,
}

/// Where a webhook's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlSource {
    /// Written in the definitions: checked to carry no credentials.
    Plain(String),
    /// The name of a secret holding it.
    Secret(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRule {
    pub name: String,
    pub events: Vec<AlertEvent>,
    /// The selection as written.
    pub select: String,
    /// Selected assets, indexed by [`AssetId`].
    selected: Vec<bool>,
    pub channels: Vec<String>,
    pub resolve: bool,
    pub defined_at: Location,
}

impl AlertRule {
    /// Whether the rule alerts on `event` about `asset` (None: an event about no asset).
    pub fn matches(&self, event: AlertEvent, asset: Option<AssetId>) -> bool {
        self.events.contains(&event)
            && match asset {
                Some(id) if event.concerns_asset() => {
                    self.selected.get(id.index()).copied().unwrap_or(false)
                }
                _ => true,
            }
    }
}

/// One (rule, channel) an event is routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route<'a> {
    pub rule: &'a AlertRule,
    pub channel: &'a ChannelDef,
}

impl AlertConfig {
    /// Where an event goes: every matching rule's channels, each channel once (the first
    /// matching rule, in file order, names the route), so overlapping rules never send
    /// the same alert twice to one channel.
    pub fn routes(&self, event: AlertEvent, asset: Option<AssetId>) -> Vec<Route<'_>> {
        let mut out: Vec<Route<'_>> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(event, asset)) {
            for name in &rule.channels {
                if out.iter().any(|r| &r.channel.name == name) {
                    continue;
                }
                if let Some(channel) = self.channels.get(name) {
                    out.push(Route { rule, channel });
                }
            }
        }
        out
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty() && self.rules.is_empty()
    }
}

// ---------------------------------------------------------------------------------------
// Loading.

/// Whether `path` is the alerts file of the assets directory `dir` (the definitions
/// loader skips it: it is not an asset definitions file).
pub fn is_alerts_file(dir: &Path, path: &Path) -> bool {
    path.parent() == Some(dir) && path.file_name().is_some_and(|n| n == ALERTS_FILE)
}

/// Reads and validates `dir/alerts.toml` (no file: an empty config). Paths in messages are
/// relative to `dir`'s parent, as the definitions loader shows them.
pub fn load_alerts(dir: &Path, graph: &AssetGraph) -> Result<AlertConfig, Diagnostics> {
    let path = dir.join(ALERTS_FILE);
    let shown = shown_path(dir, &path);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(AlertConfig::default()),
        Err(e) => return Err(Diagnostics(vec![whole_file(&shown, e)])),
    };
    let (config, diagnostics) = parse_alerts(&shown, &text, Some(graph));
    match config {
        Some(config) if diagnostics.is_empty() => Ok(config),
        _ => Err(Diagnostics(diagnostics)),
    }
}

/// The definitions loader's hook: adds the alerts file's problems to the graph's result.
/// When the graph itself is invalid, the file is still checked (all but its selections,
/// which need the graph).
pub(crate) fn check_with_graph(
    dir: &Path,
    result: Result<AssetGraph, Diagnostics>,
) -> Result<AssetGraph, Diagnostics> {
    let path = dir.join(ALERTS_FILE);
    let shown = shown_path(dir, &path);
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => parse_alerts(&shown, &text, result.as_ref().ok()).1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => vec![whole_file(&shown, e)],
    };
    match result {
        Ok(graph) if found.is_empty() => Ok(graph),
        Ok(_) => Err(Diagnostics(found)),
        Err(Diagnostics(mut all)) => {
            all.extend(found);
            Err(Diagnostics(all))
        }
    }
}

fn shown_path(dir: &Path, path: &Path) -> PathBuf {
    let base = dir.parent().unwrap_or(Path::new(""));
    path.strip_prefix(base).unwrap_or(path).to_path_buf()
}

fn whole_file(path: &Path, e: std::io::Error) -> Diagnostic {
    Diagnostic {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        field: String::new(),
        message: format!("cannot read: {e}"),
    }
}

/// Parses and validates an alerts file's text. Returns the config when every entry could
/// be read (check the diagnostics before using it) and every problem found. Without a
/// graph, selections are checked for syntax only.
pub fn parse_alerts(
    path: &Path,
    text: &str,
    graph: Option<&AssetGraph>,
) -> (Option<AlertConfig>, Vec<Diagnostic>) {
    let mut cx = Checker {
        path,
        text,
        lines: LineIndex::new(text),
        diagnostics: Vec::new(),
    };
    let (root, errors) = DeTable::parse_recoverable(text);
    if !errors.is_empty() {
        for err in &errors {
            cx.report_de(0..0, "", err);
        }
        return (None, cx.finish());
    }
    let mut channels: BTreeMap<String, (Range<usize>, ChannelSpec)> = BTreeMap::new();
    // (position in the file, span, rule): positions name fields even when an earlier
    // rule could not be read.
    let mut rules: Vec<(usize, Range<usize>, RuleSpec)> = Vec::new();
    let mut complete = true;
    for (key, value) in root.into_inner() {
        match key.get_ref().as_ref() {
            "channel" => complete &= cx.read_channels(value, &mut channels),
            "rule" => complete &= cx.read_rules(value, &mut rules),
            other => {
                complete = false;
                cx.report(
                    key.span(),
                    other,
                    format!(
                        "unknown top-level key `{other}`, expected one of {}",
                        ALERTS_FILE_KEYS.map(|k| format!("`{k}`")).join(", ")
                    ),
                );
            }
        }
    }
    let mut config = AlertConfig::default();
    for (name, (span, spec)) in &channels {
        if let Some(def) = cx.channel(name, span.clone(), spec) {
            config.channels.insert(name.clone(), def);
        }
    }
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (i, span, spec) in &rules {
        let at = format!("rule[{i}]");
        if let Some(first) = names.insert(spec.name.get_ref().clone(), *i) {
            cx.report(
                spec.name.span(),
                &format!("{at}.name"),
                format!(
                    "rule name {:?} is already used by rule[{first}]",
                    spec.name.get_ref()
                ),
            );
        }
        if let Some(rule) = cx.rule(&at, span.clone(), spec, &channels, graph) {
            config.rules.push(rule);
        }
    }
    let diagnostics = cx.finish();
    (complete.then_some(config), diagnostics)
}

mod check;

use check::Checker;
pub(crate) use check::check_plain_url;
pub use check::is_loopback;

#[cfg(test)]
mod tests;
