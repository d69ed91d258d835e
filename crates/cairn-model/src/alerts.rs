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

struct Checker<'a> {
    path: &'a Path,
    text: &'a str,
    lines: LineIndex,
    diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    fn finish(mut self) -> Vec<Diagnostic> {
        self.diagnostics.sort();
        self.diagnostics.dedup();
        self.diagnostics
    }

    fn location(&self, span: &Range<usize>) -> Location {
        Location {
            file: self.path.to_path_buf(),
            line: self.lines.locate(span.start).0,
        }
    }

    fn report(&mut self, span: Range<usize>, field: &str, message: String) {
        let (line, column) = self.lines.locate(span.start);
        self.diagnostics.push(Diagnostic {
            file: self.path.to_path_buf(),
            line,
            column,
            field: field.to_owned(),
            message,
        });
    }

    /// A serde error; the field it names (unknown or missing) is appended to `prefix`.
    fn report_de(&mut self, fallback: Range<usize>, prefix: &str, err: &toml::de::Error) {
        let span = err.span().unwrap_or(fallback);
        let message = err.message().trim_end_matches('\n').to_owned();
        let named = ["unknown field `", "missing field `"]
            .iter()
            .find_map(|p| {
                message
                    .strip_prefix(p)
                    .and_then(|r| r.split('`').next())
                    .map(str::to_owned)
            })
            // Else the key written on the error's line is the field to look at.
            .or_else(|| self.key_on_line(span.start));
        let field = match named {
            Some(f) if !prefix.is_empty() => format!("{prefix}.{f}"),
            Some(f) => f,
            None => prefix.to_owned(),
        };
        self.report(span, &field, message);
    }

    fn key_on_line(&self, offset: usize) -> Option<String> {
        let text = self.text;
        let start = text[..offset.min(text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let (key, _) = text[start..].lines().next()?.split_once('=')?;
        let key = key.trim();
        (!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .then(|| key.to_owned())
    }

    fn read_channels(
        &mut self,
        value: Spanned<DeValue<'_>>,
        out: &mut BTreeMap<String, (Range<usize>, ChannelSpec)>,
    ) -> bool {
        let span = value.span();
        let DeValue::Table(table) = value.into_inner() else {
            self.report(
                span,
                "channel",
                "`channel` must be a table: write [channel.NAME]".into(),
            );
            return false;
        };
        let mut complete = true;
        for (name, item) in table {
            let name_span = name.span();
            let name = name.into_inner().into_owned();
            let field = format!("channel.{name}");
            if !is_identifier(&name) {
                self.report(
                    name_span,
                    &field,
                    format!("name {name:?} must be lowercase letters, digits and '_'"),
                );
                complete = false;
                continue;
            }
            let span = item.span();
            match ChannelSpec::deserialize(ValueDeserializer::from(item)) {
                Ok(spec) => {
                    out.insert(name, (span, spec));
                }
                Err(err) => {
                    self.report_de(span, &field, &err);
                    complete = false;
                }
            }
        }
        complete
    }

    fn read_rules(
        &mut self,
        value: Spanned<DeValue<'_>>,
        out: &mut Vec<(usize, Range<usize>, RuleSpec)>,
    ) -> bool {
        let span = value.span();
        let DeValue::Array(items) = value.into_inner() else {
            self.report(
                span,
                "rule",
                "`rule` must be an array of tables: write each rule as [[rule]]".into(),
            );
            return false;
        };
        let mut complete = true;
        for (i, item) in items.into_iter().enumerate() {
            let span = item.span();
            match RuleSpec::deserialize(ValueDeserializer::from(item)) {
                Ok(spec) => out.push((i, span, spec)),
                Err(err) => {
                    self.report_de(span, &format!("rule[{i}]"), &err);
                    complete = false;
                }
            }
        }
        complete
    }

    fn channel(
        &mut self,
        name: &str,
        span: Range<usize>,
        spec: &ChannelSpec,
    ) -> Option<ChannelDef> {
        let at = format!("channel.{name}");
        let errors_before = self.diagnostics.len();
        let is_email = spec.kind == ChannelKindSpec::Email;
        // Fields of the other family are refused rather than ignored: a `to` on a webhook
        // is a mistake the user should hear about.
        let email_only = [
            ("smtp_host", spec.smtp_host.is_some()),
            ("smtp_port", spec.smtp_port.is_some()),
            ("tls", spec.tls.is_some()),
            ("from", spec.from.is_some()),
            ("to", !spec.to.is_empty()),
            ("username_secret", spec.username_secret.is_some()),
            ("password_secret", spec.password_secret.is_some()),
        ];
        let webhook_only = [
            ("url_secret", spec.url_secret.is_some()),
            ("url", spec.url.is_some()),
        ];
        let (foreign, kind_name) = if is_email {
            (&webhook_only[..], "email")
        } else {
            (&email_only[..], "webhook")
        };
        for (field, present) in foreign {
            if *present {
                self.report(
                    span.clone(),
                    &format!("{at}.{field}"),
                    format!("`{field}` does not apply to {kind_name} channels"),
                );
            }
        }
        let timeout = match &spec.timeout {
            None if is_email => Duration::from_secs(30),
            None => Duration::from_secs(10),
            Some(raw) => match humantime::parse_duration(raw.get_ref()) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(300) => d,
                Ok(_) => {
                    self.report(
                        raw.span(),
                        &format!("{at}.timeout"),
                        "must be more than 0s and at most 5m".into(),
                    );
                    Duration::ZERO
                }
                Err(e) => {
                    self.report(raw.span(), &format!("{at}.timeout"), format!("{e}"));
                    Duration::ZERO
                }
            },
        };
        let max_per_hour = match spec.rate_limit {
            None => DEFAULT_MAX_PER_HOUR,
            // One slot of the hour is kept for the digest that says what was held back.
            Some(RateLimitSpec {
                max_per_hour: n @ 0..2,
            }) => {
                self.report(
                    span.clone(),
                    &format!("{at}.rate_limit.max_per_hour"),
                    "must be at least 2 (one alert an hour is kept for the digest of those over the limit)".into(),
                );
                n
            }
            Some(r) => r.max_per_hour,
        };
        let transport = if is_email {
            self.email(&at, &span, spec).map(Transport::Email)
        } else {
            let format = match spec.kind {
                ChannelKindSpec::Slack => WebhookFormat::Slack,
                ChannelKindSpec::Teams => WebhookFormat::Teams,
                _ => WebhookFormat::Json,
            };
            self.webhook_url(&at, &span, spec, format)
                .map(|url| Transport::Webhook { format, url })
        };
        let transport = transport?;
        (self.diagnostics.len() == errors_before).then(|| ChannelDef {
            name: name.to_owned(),
            transport,
            timeout,
            max_per_hour,
            defined_at: self.location(&span),
        })
    }

    fn email(&mut self, at: &str, span: &Range<usize>, spec: &ChannelSpec) -> Option<EmailDef> {
        let Some(host) = &spec.smtp_host else {
            self.report(
                span.clone(),
                &format!("{at}.smtp_host"),
                "email channels need `smtp_host`".into(),
            );
            return None;
        };
        let tls = spec
            .tls
            .as_ref()
            .map_or(SmtpTls::Starttls, |t| *t.get_ref());
        if tls == SmtpTls::None && !is_loopback(host.get_ref()) {
            self.report(
                spec.tls.as_ref().map_or(host.span(), |t| t.span()),
                &format!("{at}.tls"),
                format!(
                    "`tls = \"none\"` is allowed only for a loopback host (localhost, 127.0.0.1, ::1), not {:?}: alerts and SMTP credentials would cross the network in clear",
                    host.get_ref()
                ),
            );
        }
        if host.get_ref().trim().is_empty() || host.get_ref().contains(char::is_whitespace) {
            self.report(
                host.span(),
                &format!("{at}.smtp_host"),
                "must be a host name or address".into(),
            );
        }
        let Some(from) = &spec.from else {
            self.report(
                span.clone(),
                &format!("{at}.from"),
                "email channels need a `from` address".into(),
            );
            return None;
        };
        self.check_address(from, &format!("{at}.from"));
        if spec.to.is_empty() {
            self.report(
                span.clone(),
                &format!("{at}.to"),
                "email channels need at least one recipient in `to`".into(),
            );
        }
        for (i, to) in spec.to.iter().enumerate() {
            self.check_address(to, &format!("{at}.to[{i}]"));
        }
        for (field, secret) in [
            ("username_secret", &spec.username_secret),
            ("password_secret", &spec.password_secret),
        ] {
            if let Some(name) = secret {
                self.check_secret_name(name, &format!("{at}.{field}"));
            }
        }
        if spec.username_secret.is_some() != spec.password_secret.is_some() {
            self.report(
                span.clone(),
                &format!("{at}.password_secret"),
                "`username_secret` and `password_secret` go together".into(),
            );
        }
        Some(EmailDef {
            host: host.get_ref().clone(),
            port: spec.smtp_port.unwrap_or(match tls {
                SmtpTls::Starttls => 587,
                SmtpTls::Tls => 465,
                SmtpTls::None => 25,
            }),
            tls,
            from: from.get_ref().clone(),
            to: spec.to.iter().map(|t| t.get_ref().clone()).collect(),
            username_secret: spec.username_secret.as_ref().map(|s| s.get_ref().clone()),
            password_secret: spec.password_secret.as_ref().map(|s| s.get_ref().clone()),
        })
    }

    /// Slack and Teams URLs are bearer credentials (whoever has one can post), so they
    /// come only from secrets. A generic webhook may have a plain URL, provided nothing in
    /// it looks like a credential: no user info and no query string (where tokens
    /// usually go). A URL with a token in its path cannot be told apart: docs/alerts.md
    /// says to use `url_secret` for those.
    fn webhook_url(
        &mut self,
        at: &str,
        span: &Range<usize>,
        spec: &ChannelSpec,
        format: WebhookFormat,
    ) -> Option<UrlSource> {
        match (&spec.url_secret, &spec.url) {
            (Some(_), Some(url)) => {
                self.report(
                    url.span(),
                    &format!("{at}.url"),
                    "write either `url` or `url_secret`, not both".into(),
                );
                None
            }
            (Some(name), None) => {
                self.check_secret_name(name, &format!("{at}.url_secret"));
                Some(UrlSource::Secret(name.get_ref().clone()))
            }
            (None, Some(url)) if format != WebhookFormat::Json => {
                self.report(
                    url.span(),
                    &format!("{at}.url"),
                    "Slack and Teams webhook URLs are credentials: name a secret with `url_secret` instead".into(),
                );
                None
            }
            (None, Some(url)) => match check_plain_url(url.get_ref()) {
                Ok(()) => Some(UrlSource::Plain(url.get_ref().clone())),
                Err(message) => {
                    self.report(url.span(), &format!("{at}.url"), message);
                    None
                }
            },
            (None, None) => {
                self.report(
                    span.clone(),
                    &format!("{at}.url_secret"),
                    "webhook channels need `url_secret` (or, for a generic webhook without credentials, `url`)".into(),
                );
                None
            }
        }
    }

    fn check_address(&mut self, address: &Spanned<String>, field: &str) {
        let a = address.get_ref();
        let ok = a.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@')
        }) && !a
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "<>,;".contains(c));
        if !ok {
            self.report(
                address.span(),
                field,
                format!("{a:?} is not an email address (write it as name@example.org)"),
            );
        }
    }

    fn check_secret_name(&mut self, name: &Spanned<String>, field: &str) {
        let n = name.get_ref();
        let ok = n
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
            && n.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
        if !ok {
            self.report(
                name.span(),
                field,
                // The value is not echoed: it may be the secret itself, written by mistake.
                "must be a secret's name (A-Z, 0-9 and '_', as in the secrets file), not its value"
                    .into(),
            );
        }
    }

    fn rule(
        &mut self,
        at: &str,
        span: Range<usize>,
        spec: &RuleSpec,
        channels: &BTreeMap<String, (Range<usize>, ChannelSpec)>,
        graph: Option<&AssetGraph>,
    ) -> Option<AlertRule> {
        let errors_before = self.diagnostics.len();
        if !is_identifier(spec.name.get_ref()) {
            self.report(
                spec.name.span(),
                &format!("{at}.name"),
                format!(
                    "name {:?} must be lowercase letters, digits and '_'",
                    spec.name.get_ref()
                ),
            );
        }
        if spec.events.is_empty() {
            self.report(
                span.clone(),
                &format!("{at}.events"),
                format!(
                    "a rule needs at least one event, of {}",
                    AlertEvent::ALL.map(|e| format!("`{e}`")).join(", ")
                ),
            );
        }
        if spec.channels.is_empty() {
            self.report(
                span.clone(),
                &format!("{at}.channels"),
                "a rule needs at least one channel".into(),
            );
        }
        for (i, channel) in spec.channels.iter().enumerate() {
            if !channels.contains_key(channel.get_ref()) {
                let known: Vec<String> = channels.keys().map(|k| format!("{k:?}")).collect();
                self.report(
                    channel.span(),
                    &format!("{at}.channels[{i}]"),
                    format!(
                        "unknown channel {:?}{}",
                        channel.get_ref(),
                        if known.is_empty() {
                            " (no channel is defined: add [channel.NAME])".to_owned()
                        } else {
                            format!(", defined: {}", known.join(", "))
                        }
                    ),
                );
            }
        }
        let (select, select_span) = match &spec.select {
            Some(s) => (s.get_ref().clone(), s.span()),
            None => ("*".to_owned(), span.clone()),
        };
        let mut selected = Vec::new();
        match Selection::parse(&select) {
            Err(e) => self.report(select_span, &format!("{at}.select"), e.to_string()),
            Ok(selection) => {
                if let Some(graph) = graph {
                    match selection.resolve(graph) {
                        Ok(ids) => {
                            selected = vec![false; graph.len()];
                            for id in ids {
                                selected[id.index()] = true;
                            }
                        }
                        Err(e) => self.report(select_span, &format!("{at}.select"), e.to_string()),
                    }
                }
            }
        }
        let mut events: Vec<AlertEvent> = spec.events.iter().map(|e| *e.get_ref()).collect();
        events.sort();
        events.dedup();
        (self.diagnostics.len() == errors_before).then(|| AlertRule {
            name: spec.name.get_ref().clone(),
            events,
            select,
            selected,
            channels: spec.channels.iter().map(|c| c.get_ref().clone()).collect(),
            resolve: spec.resolve.unwrap_or(true),
            defined_at: self.location(&span),
        })
    }
}

/// Loopback by name or address: the only hosts a plain SMTP or HTTP connection may reach.
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A plain webhook URL: http(s), a host, no user info, no query string or fragment;
/// `http` only to a loopback host.
fn check_plain_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not an http(s) URL"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(
            "a URL with credentials (user info) must come from a secret: use `url_secret`".into(),
        );
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("a URL with a query string may carry a token: use `url_secret` for it".into());
    }
    // `[::1]:8080`, `example.org:8443`, `example.org`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((h, tail)) if tail.is_empty() || tail.starts_with(':') => {
                (h, tail.strip_prefix(':'))
            }
            _ => return Err(format!("{url:?} has a bad host")),
        },
        None => match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err(format!("{url:?} has a bad port"));
    }
    if host.is_empty() || host.contains(char::is_whitespace) {
        return Err(format!("{url:?} has no host"));
    }
    match scheme {
        "https" => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!(
            "plain http is allowed only to a loopback host, not {host:?}: use https"
        )),
        _ => Err(format!("{url:?} is not an http(s) URL")),
    }
}

fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Vec<String> {
        parse_alerts(Path::new("assets/alerts.toml"), text, None)
            .1
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    #[test]
    fn a_complete_file_reads() {
        let text = r#"
[channel.oncall]
kind = "email"
smtp_host = "smtp.example.org"
from = "cairn@example.org"
to = ["oncall@example.org"]
username_secret = "SMTP_USER"
password_secret = "SMTP_PASSWORD"
rate_limit = { max_per_hour = 5 }

[channel.teams]
kind = "teams"
url_secret = "TEAMS_URL"
timeout = "5s"

[channel.local]
kind = "webhook"
url = "http://127.0.0.1:9000/hook"

[[rule]]
name = "failures"
events = ["run_failed", "freshness_breach"]
channels = ["oncall", "teams"]

[[rule]]
name = "everything_local"
events = ["backfill_finished"]
select = "*"
channels = ["local"]
resolve = false
"#;
        let (config, diagnostics) = parse_alerts(Path::new("alerts.toml"), text, None);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let config = config.unwrap();
        let oncall = &config.channels["oncall"];
        assert_eq!(oncall.max_per_hour, 5);
        assert_eq!(oncall.timeout, Duration::from_secs(30));
        let Transport::Email(email) = &oncall.transport else {
            panic!("email")
        };
        assert_eq!((email.port, email.tls), (587, SmtpTls::Starttls));
        assert_eq!(
            config.channels["teams"].transport,
            Transport::Webhook {
                format: WebhookFormat::Teams,
                url: UrlSource::Secret("TEAMS_URL".into())
            }
        );
        assert_eq!(config.channels["teams"].max_per_hour, DEFAULT_MAX_PER_HOUR);
        assert_eq!(config.rules.len(), 2);
        assert!(!config.rules[1].resolve);
        assert_eq!(config.rules[0].defined_at.line, 20);
    }

    #[test]
    fn problems_name_line_and_field() {
        let text = r#"
[channel.mail]
kind = "email"
smtp_host = "smtp.example.org"
tls = "none"
from = "not an address"

[channel.slack]
kind = "slack"
url = "https://hooks.slack.com/services/T/B/x"

[channel.hook]
kind = "webhook"
url = "https://example.org/hook?token=abc"
colour = "red"

[[rule]]
name = "r"
events = ["run_failed", "tea_time"]
channels = ["mail"]

[[rule]]
name = "s"
events = ["run_failed"]
channels = ["mial"]
select = "group:"
"#;
        let found = check(text);
        let expect = [
            "assets/alerts.toml:5:7: channel.mail.tls: `tls = \"none\"` is allowed only for a loopback host",
            "assets/alerts.toml:6:8: channel.mail.from: \"not an address\" is not an email address",
            "channel.mail.to: email channels need at least one recipient",
            "assets/alerts.toml:10:7: channel.slack.url: Slack and Teams webhook URLs are credentials",
            "channel.hook.colour: unknown field `colour`",
            "assets/alerts.toml:19:25: rule[0].events: unknown variant `tea_time`",
            "assets/alerts.toml:25:13: rule[1].channels[0]: unknown channel \"mial\"",
            "rule[1].select: selection term",
        ];
        for e in expect {
            assert!(
                found.iter().any(|f| f.contains(e)),
                "missing {e:?} in {found:#?}"
            );
        }
    }

    #[test]
    fn unknown_top_level_keys_and_duplicate_rule_names_are_refused() {
        let found = check(
            "[channels.x]\nkind = \"slack\"\n[[rule]]\nname = \"a\"\nevents = [\"run_failed\"]\nchannels = []\n[[rule]]\nname = \"a\"\nevents = []\nchannels = []\n",
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("unknown top-level key `channels`")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|f| f.contains("already used by rule[0]")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|f| f.contains("rule[1].events: a rule needs at least one event")),
            "{found:?}"
        );
    }

    #[test]
    fn secret_values_are_refused_where_names_are_expected() {
        let found = check(
            "[channel.x]\nkind = \"webhook\"\nurl_secret = \"https://hooks.example.org/abc\"\n",
        );
        assert!(
            found.iter().any(|f| f.contains("must be a secret's name")),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|f| f.contains("hooks.example.org")),
            "a secret written by mistake is not echoed: {found:?}"
        );
    }

    #[test]
    fn plain_urls_carry_no_credentials() {
        assert!(check_plain_url("https://example.org/hook").is_ok());
        assert!(check_plain_url("http://localhost:8080/hook").is_ok());
        assert!(check_plain_url("http://[::1]:8080/hook").is_ok());
        assert!(check_plain_url("http://example.org/hook").is_err());
        assert!(check_plain_url("https://user:pw@example.org/").is_err());
        assert!(check_plain_url("https://example.org/?key=1").is_err());
        assert!(check_plain_url("ftp://example.org/").is_err());
        assert!(check_plain_url("https://example.org:99999/").is_err());
        assert!(check_plain_url("http://[::1/").is_err());
        assert!(is_loopback("127.0.0.2") && is_loopback("::1") && !is_loopback("10.0.0.1"));
    }

    #[test]
    fn events_round_trip_their_names() {
        for e in AlertEvent::ALL {
            assert_eq!(AlertEvent::parse(e.as_str()), Some(e));
        }
    }
}
