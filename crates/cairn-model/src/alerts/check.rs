//! The checks of `alerts.toml` against the graph and itself: channels, rules, names, URLs.

use super::*;

pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
    pub(super) lines: LineIndex,
    pub(super) diagnostics: Vec<Diagnostic>,
}

impl Checker<'_> {
    pub(super) fn finish(mut self) -> Vec<Diagnostic> {
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

    pub(super) fn report(&mut self, span: Range<usize>, field: &str, message: String) {
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
    pub(super) fn report_de(
        &mut self,
        fallback: Range<usize>,
        prefix: &str,
        err: &toml::de::Error,
    ) {
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

    pub(super) fn read_channels(
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

    pub(super) fn read_rules(
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

    pub(super) fn channel(
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

    pub(super) fn rule(
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
pub(crate) fn check_plain_url(url: &str) -> Result<(), String> {
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
