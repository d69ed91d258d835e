//! Delivery: the [`Channel`] trait, its typed errors, and the two transports (SMTP with
//! lettre, HTTP webhooks with reqwest).
//!
//! Secrets are read when a message is delivered, not when the channel is built, so a
//! secret added to the secrets file is picked up by the next retry, and a missing one is
//! a retryable delivery failure (the alert is not lost while someone fixes it).
//! No secret value is ever logged or put in an error: webhook URLs (which carry their
//! token) are shown as scheme and host only, and reqwest's errors are stripped of the URL.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_model::alerts::{ChannelDef, EmailDef, SmtpTls, Transport, UrlSource, is_loopback};

use crate::policy::Outcome;
use crate::render::{Body, Format, Rendered};

/// Where secret values come from. The binary passes its run secrets
/// (`cairn_exec::environment::Secrets`: the `--secrets-file` KEY=VALUE file, the
/// environment winning) as a closure: `Arc::new(move |n: &str| secrets.get(n))`. This crate
/// does not depend on `cairn-exec` (which brings the store).
pub trait Secrets: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String> + Send + Sync> Secrets for F {
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Secrets for std::collections::BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::BTreeMap::get(self, name).cloned()
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A place alerts go.
pub trait Channel: Send + Sync {
    fn name(&self) -> &str;
    /// The format messages must be rendered in for this channel.
    fn format(&self) -> Format;
    fn deliver<'a>(
        &'a self,
        message: &'a Rendered,
    ) -> BoxFuture<'a, Result<DeliveryReceipt, DeliveryError>>;
}

/// What the far end said when it accepted a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReceipt {
    pub channel: String,
    /// "HTTP 200", or the SMTP server's reply code.
    pub response: String,
}

/// Why a delivery failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Retryable: someone may add it to the secrets file before the next attempt.
    #[error("alert channel {channel}: secret {secret} is not set")]
    MissingSecret { channel: String, secret: String },
    /// A definition or secret that can never work (a bad address or URL).
    #[error("alert channel {channel}: {reason}")]
    Invalid { channel: String, reason: String },
    /// A plain (unencrypted) connection to a host that is not loopback.
    #[error(
        "alert channel {channel}: refusing an unencrypted connection to {host}, which is not a loopback host"
    )]
    Insecure { channel: String, host: String },
    #[error("alert channel {channel}: timed out after {timeout:?}")]
    Timeout { channel: String, timeout: Duration },
    #[error("alert channel {channel}: cannot connect to {endpoint}: {reason}")]
    Connect {
        channel: String,
        endpoint: String,
        reason: String,
    },
    /// TLS failed (no STARTTLS offered, untrusted certificate...): a setup problem.
    #[error("alert channel {channel}: TLS with {endpoint} failed: {reason}")]
    Tls {
        channel: String,
        endpoint: String,
        reason: String,
    },
    /// The server answered with a refusal: an HTTP status or an SMTP reply.
    #[error("alert channel {channel}: {endpoint} refused the message ({status}): {reason}")]
    Refused {
        channel: String,
        endpoint: String,
        status: String,
        retryable: bool,
        reason: String,
    },
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DeliveryError::MissingSecret { .. }
            | DeliveryError::Timeout { .. }
            | DeliveryError::Connect { .. } => true,
            DeliveryError::Refused { retryable, .. } => *retryable,
            DeliveryError::Invalid { .. }
            | DeliveryError::Insecure { .. }
            | DeliveryError::Tls { .. } => false,
        }
    }

    /// The outcome to record for the policy.
    pub fn outcome(&self) -> Outcome {
        if self.is_retryable() {
            Outcome::Retryable
        } else {
            Outcome::Permanent
        }
    }
}

/// Builds the channel for a definition.
pub fn channel(def: &ChannelDef, secrets: Arc<dyn Secrets>) -> Box<dyn Channel> {
    match &def.transport {
        Transport::Email(email) => Box::new(SmtpChannel::new(def, email.clone(), secrets)),
        Transport::Webhook { format, url } => {
            Box::new(WebhookChannel::new(def, *format, url.clone(), secrets))
        }
    }
}

fn secret(secrets: &dyn Secrets, channel: &str, name: &str) -> Result<String, DeliveryError> {
    secrets
        .get(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DeliveryError::MissingSecret {
            channel: channel.to_owned(),
            secret: name.to_owned(),
        })
}

// ---------------------------------------------------------------------------------------
// SMTP.

/// Email over SMTP: STARTTLS (required, never a fallback to plain), TLS from the first
/// byte, or plain to a loopback relay only.
pub struct SmtpChannel {
    name: String,
    email: EmailDef,
    timeout: Duration,
    secrets: Arc<dyn Secrets>,
    /// Extra trusted roots (PEM), for a relay with a certificate of the hospital's own CA.
    extra_roots: Vec<Vec<u8>>,
}

impl std::fmt::Debug for SmtpChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpChannel")
            .field("name", &self.name)
            .field("host", &self.email.host)
            .field("port", &self.email.port)
            .field("tls", &self.email.tls)
            .finish_non_exhaustive()
    }
}

impl SmtpChannel {
    pub fn new(def: &ChannelDef, email: EmailDef, secrets: Arc<dyn Secrets>) -> Self {
        Self {
            name: def.name.clone(),
            email,
            timeout: def.timeout,
            secrets,
            extra_roots: Vec::new(),
        }
    }

    /// Trusts `pem` (a CA certificate) besides the public roots.
    pub fn with_root_certificate(mut self, pem: &[u8]) -> Self {
        self.extra_roots.push(pem.to_vec());
        self
    }

    fn endpoint(&self) -> String {
        format!("{}:{}", self.email.host, self.email.port)
    }

    async fn send(&self, message: &Rendered) -> Result<DeliveryReceipt, DeliveryError> {
        use lettre::message::{Mailbox, header::ContentType};
        use lettre::transport::smtp::authentication::Credentials;
        use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

        let invalid = |reason: String| DeliveryError::Invalid {
            channel: self.name.clone(),
            reason,
        };
        let Body::Email { subject, text } = &message.body else {
            return Err(invalid("an email channel got a webhook body".into()));
        };
        if self.email.tls == SmtpTls::None && !is_loopback(&self.email.host) {
            return Err(DeliveryError::Insecure {
                channel: self.name.clone(),
                host: self.email.host.clone(),
            });
        }
        let from: Mailbox = self
            .email
            .from
            .parse()
            .map_err(|e| invalid(format!("bad from address: {e}")))?;
        let mut builder = Message::builder()
            .from(from)
            .subject(subject.clone())
            // Receivers can deduplicate a message a crash made us send twice.
            .message_id(Some(format!("<{}@cairn.alerts>", message.idempotency_key)))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.email.to {
            let to: Mailbox = to
                .parse()
                .map_err(|e| invalid(format!("bad recipient address: {e}")))?;
            builder = builder.to(to);
        }
        let email = builder
            .body(text.clone())
            .map_err(|e| invalid(format!("cannot build the message: {e}")))?;

        let tls_error = |reason: String| DeliveryError::Tls {
            channel: self.name.clone(),
            endpoint: self.endpoint(),
            reason,
        };
        let tls = match self.email.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(self.email.host.clone());
                for pem in &self.extra_roots {
                    let cert = Certificate::from_pem(pem)
                        .map_err(|e| tls_error(format!("bad root certificate: {e}")))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| tls_error(e.to_string()))?;
                if mode == SmtpTls::Starttls {
                    Tls::Required(params)
                } else {
                    Tls::Wrapper(params)
                }
            }
        };
        let mut transport =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(self.email.host.clone())
                .port(self.email.port)
                .tls(tls)
                .timeout(Some(self.timeout));
        if let (Some(user), Some(password)) =
            (&self.email.username_secret, &self.email.password_secret)
        {
            let user = secret(self.secrets.as_ref(), &self.name, user)?;
            let password = secret(self.secrets.as_ref(), &self.name, password)?;
            transport = transport.credentials(Credentials::new(user, password));
        }
        let transport = transport.build();
        let sent = tokio::time::timeout(self.timeout, transport.send(email)).await;
        match sent {
            Err(_) => Err(DeliveryError::Timeout {
                channel: self.name.clone(),
                timeout: self.timeout,
            }),
            Ok(Ok(response)) => Ok(DeliveryReceipt {
                channel: self.name.clone(),
                response: format!("SMTP {}", response.code()),
            }),
            Ok(Err(e)) => Err(self.classify(&e)),
        }
    }

    fn classify(&self, e: &lettre::transport::smtp::Error) -> DeliveryError {
        let channel = self.name.clone();
        let endpoint = self.endpoint();
        if e.is_timeout() {
            return DeliveryError::Timeout {
                channel,
                timeout: self.timeout,
            };
        }
        if e.is_transient() || e.is_permanent() {
            return DeliveryError::Refused {
                channel,
                endpoint,
                status: e
                    .status()
                    .map_or_else(|| "SMTP".into(), |c| format!("SMTP {c}")),
                retryable: e.is_transient(),
                reason: e.to_string(),
            };
        }
        if e.is_tls() {
            return DeliveryError::Tls {
                channel,
                endpoint,
                reason: e.to_string(),
            };
        }
        // A server that does not offer STARTTLS when it is required is a client error in
        // lettre's terms: a setup problem, not a passing one.
        if e.is_client() {
            return DeliveryError::Tls {
                channel,
                endpoint,
                reason: e.to_string(),
            };
        }
        // lettre reports a certificate the server cannot prove (untrusted, wrong name,
        // expired) as a connection error; rustls' message is in the text. Retrying will
        // not fix it, so it is classified as the TLS setup problem it is.
        let reason = error_text(e);
        if reason.contains("certificate") || reason.contains("InvalidCertificate") {
            return DeliveryError::Tls {
                channel,
                endpoint,
                reason,
            };
        }
        DeliveryError::Connect {
            channel,
            endpoint,
            reason,
        }
    }
}

/// An error and its sources, one line.
fn error_text(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

impl Channel for SmtpChannel {
    fn name(&self) -> &str {
        &self.name
    }
    fn format(&self) -> Format {
        Format::Email
    }
    fn deliver<'a>(
        &'a self,
        message: &'a Rendered,
    ) -> BoxFuture<'a, Result<DeliveryReceipt, DeliveryError>> {
        Box::pin(self.send(message))
    }
}

// ---------------------------------------------------------------------------------------
// Webhooks.

/// A JSON POST: 2xx is delivered, 408/429/5xx and network failures are retried, other
/// statuses (and redirects, which are not followed: the body must not go elsewhere) are
/// permanent.
pub struct WebhookChannel {
    name: String,
    format: cairn_model::alerts::WebhookFormat,
    url: UrlSource,
    timeout: Duration,
    secrets: Arc<dyn Secrets>,
}

impl std::fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match &self.url {
            UrlSource::Plain(u) => redact_url(u),
            UrlSource::Secret(name) => format!("<secret {name}>"),
        };
        f.debug_struct("WebhookChannel")
            .field("name", &self.name)
            .field("format", &self.format)
            .field("url", &url)
            .finish_non_exhaustive()
    }
}

/// `https://hooks.slack.com/services/T0/B0/XYZ?x=1` -> `https://hooks.slack.com/…`: the
/// scheme and host say where, the rest may be a token.
pub fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}/…")
        }
        None => "<url>".into(),
    }
}

impl WebhookChannel {
    pub fn new(
        def: &ChannelDef,
        format: cairn_model::alerts::WebhookFormat,
        url: UrlSource,
        secrets: Arc<dyn Secrets>,
    ) -> Self {
        Self {
            name: def.name.clone(),
            format,
            url,
            timeout: def.timeout,
            secrets,
        }
    }

    fn url(&self) -> Result<String, DeliveryError> {
        match &self.url {
            UrlSource::Plain(u) => Ok(u.clone()),
            UrlSource::Secret(name) => secret(self.secrets.as_ref(), &self.name, name),
        }
    }

    async fn send(&self, message: &Rendered) -> Result<DeliveryReceipt, DeliveryError> {
        let Body::Json(body) = &message.body else {
            return Err(DeliveryError::Invalid {
                channel: self.name.clone(),
                reason: "a webhook channel got an email body".into(),
            });
        };
        let url = self.url()?;
        let endpoint = redact_url(&url);
        let parsed = reqwest::Url::parse(&url).map_err(|_| DeliveryError::Invalid {
            channel: self.name.clone(),
            // The parse error could quote the URL: say only that it is not one.
            reason: "the webhook URL is not a valid URL".into(),
        })?;
        let host = parsed.host_str().unwrap_or("").to_owned();
        match parsed.scheme() {
            "https" => {}
            "http" if is_loopback(&host) => {}
            "http" => {
                return Err(DeliveryError::Insecure {
                    channel: self.name.clone(),
                    host,
                });
            }
            _ => {
                return Err(DeliveryError::Invalid {
                    channel: self.name.clone(),
                    reason: "the webhook URL is not http(s)".into(),
                });
            }
        }
        // A client per message: alerts are few, and this keeps no idle connection (nor
        // resolved address) to a host whose URL may have changed in the secrets.
        let client = reqwest::Client::builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| DeliveryError::Invalid {
                channel: self.name.clone(),
                reason: e.without_url().to_string(),
            })?;
        let sent = client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", &message.idempotency_key)
            .body(body.to_string())
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Err(DeliveryError::Timeout {
                    channel: self.name.clone(),
                    timeout: self.timeout,
                });
            }
            Err(e) => {
                return Err(DeliveryError::Connect {
                    channel: self.name.clone(),
                    endpoint,
                    reason: scrub(&error_text(&e.without_url()), &url),
                });
            }
        };
        let status = response.status();
        if status.is_success() {
            return Ok(DeliveryReceipt {
                channel: self.name.clone(),
                response: format!("HTTP {}", status.as_u16()),
            });
        }
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT;
        // A short piece of the answer helps ("invalid_token", "no_text"); it is scrubbed of
        // the URL and its parts in case the server echoes them.
        let text = tokio::time::timeout(Duration::from_secs(2), response.text())
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default();
        let reason: String = scrub(text.trim(), &url).chars().take(200).collect();
        Err(DeliveryError::Refused {
            channel: self.name.clone(),
            endpoint,
            status: format!("HTTP {}", status.as_u16()),
            retryable,
            reason,
        })
    }
}

/// Removes the URL, and every path segment and query value of it long enough to be a
/// token, from `text`.
fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "…");
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    for part in rest.split(['/', '?', '&', '=', '#']).skip(1) {
        if part.len() >= 6 {
            out = out.replace(part, "…");
        }
    }
    out
}

impl Channel for WebhookChannel {
    fn name(&self) -> &str {
        &self.name
    }
    fn format(&self) -> Format {
        Format::Webhook(self.format)
    }
    fn deliver<'a>(
        &'a self,
        message: &'a Rendered,
    ) -> BoxFuture<'a, Result<DeliveryReceipt, DeliveryError>> {
        Box::pin(self.send(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_to_scheme_and_host() {
        assert_eq!(
            redact_url("https://hooks.slack.com/services/T0/B0/SECRETTOKEN"),
            "https://hooks.slack.com/…"
        );
        assert_eq!(
            redact_url("https://user:pw@example.org:8443/x?token=abc"),
            "https://example.org:8443/…"
        );
        assert_eq!(redact_url("garbage"), "<url>");
    }

    #[test]
    fn scrub_removes_url_parts() {
        let url = "https://h.example/services/T0/B0/SECRETTOKEN?sig=abcdef123";
        let text = format!("bad request for {url}; token SECRETTOKEN sig abcdef123");
        let out = scrub(&text, url);
        assert!(
            !out.contains("SECRETTOKEN") && !out.contains("abcdef123"),
            "{out}"
        );
    }

    #[test]
    fn retryable_classification() {
        let c = || "c".to_owned();
        assert!(
            DeliveryError::MissingSecret {
                channel: c(),
                secret: "S".into()
            }
            .is_retryable()
        );
        assert!(
            !DeliveryError::Insecure {
                channel: c(),
                host: "h".into()
            }
            .is_retryable()
        );
        assert_eq!(
            DeliveryError::Invalid {
                channel: c(),
                reason: "r".into()
            }
            .outcome(),
            Outcome::Permanent
        );
    }
}
