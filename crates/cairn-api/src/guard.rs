//! Who may reach the server at all, before any GraphQL is parsed.
//!
//! Local mode gives a request without a token the local user's rights (admin, `phi`).
//! That is safe only if the request really comes from the person at the keyboard and not
//! from a web page they have open, since every page can send requests to loopback. So in
//! local mode:
//! - the `Host` header must name a loopback address (or `localhost`) with the server's
//!   port: a DNS-rebound name (`evil.example` pointed at 127.0.0.1) is refused;
//! - a request that says where it comes from (`Origin`, `Sec-Fetch-Site`) must come from
//!   the server's own origin: cross-site requests and WebSocket upgrades are refused
//!   (browsers apply no CORS to WebSockets, and "simple" POSTs need no preflight);
//! - a browser request acts as the local user only with the per-start session cookie
//!   (`cairn_local`, HttpOnly, SameSite=Strict) that the server's own pages set; a
//!   request with no browser marker at all (curl, scripts, the CLI) is the local user.
//!
//! In token mode nothing grants ambient authority (no cookie, the token travels in a
//! header a page cannot set cross-origin without a CORS preflight, which this server never
//! answers), so only the transport rules of `http.rs` apply.

use axum::http::{HeaderMap, HeaderValue, header};

use crate::auth::AuthMode;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "cairn_local";

/// What the server knows to judge a request's provenance.
#[derive(Debug, Clone)]
pub struct Guard {
    pub mode: AuthMode,
    /// The port the server listens on: a local-mode `Host` must carry it.
    pub port: u16,
    /// The local session's secret: new at every start, never stored.
    session: String,
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error(
        "the Host header {0:?} is not this server's loopback address (local mode answers only http://127.0.0.1:PORT or http://localhost:PORT)"
    )]
    Host(String),
    #[error("cross-origin request from {0:?} refused (local mode serves its own pages only)")]
    Origin(String),
    #[error("cross-site request refused (Sec-Fetch-Site: {0})")]
    FetchSite(String),
}

/// How a tokenless request may act in local mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalIdentity {
    /// The local user: a non-browser client, or a page of this server (session cookie).
    User,
    /// A browser request without the session cookie: it must authenticate.
    Anonymous,
}

impl Guard {
    pub fn new(mode: AuthMode, port: u16) -> Self {
        let a = uuid::Uuid::new_v4();
        let b = uuid::Uuid::new_v4();
        Self {
            mode,
            port,
            session: format!("{}{}", a.simple(), b.simple()),
        }
    }

    /// The checks every request goes through (local mode only: see the module docs).
    pub fn admit(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.mode != AuthMode::Local {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
            .unwrap_or_default();
        if !is_loopback_authority(&host, self.port) {
            return Err(Refusal::Host(truncate(&host)));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = String::from_utf8_lossy(origin.as_bytes());
            // The Host was checked above, so "same origin" is `http://` + that Host.
            let same = origin
                .strip_prefix("http://")
                .is_some_and(|rest| rest.eq_ignore_ascii_case(&host));
            if !same {
                return Err(Refusal::Origin(truncate(&origin)));
            }
        }
        if let Some(site) = headers.get("sec-fetch-site") {
            let site = String::from_utf8_lossy(site.as_bytes());
            // `none`: typed in the address bar or a bookmark; `same-origin`: our pages.
            if !matches!(&*site, "same-origin" | "none") {
                return Err(Refusal::FetchSite(truncate(&site)));
            }
        }
        Ok(())
    }

    /// In local mode, whether a request without a token acts as the local user.
    pub fn local_identity(&self, headers: &HeaderMap) -> LocalIdentity {
        if self.has_session(headers) {
            return LocalIdentity::User;
        }
        // A browser says where a request comes from; scripts and the CLI do not.
        let browser = headers.contains_key(header::ORIGIN)
            || headers.contains_key("sec-fetch-site")
            || headers.contains_key("sec-fetch-mode");
        if browser {
            LocalIdentity::Anonymous
        } else {
            LocalIdentity::User
        }
    }

    fn has_session(&self, headers: &HeaderMap) -> bool {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(name, value)| name == SESSION_COOKIE && constant_time_eq(value, &self.session))
    }

    /// The `Set-Cookie` value a page of this server sends in local mode: HttpOnly (no
    /// script reads it), SameSite=Strict (no other site's request carries it).
    pub fn session_cookie(&self) -> Option<HeaderValue> {
        (self.mode == AuthMode::Local)
            .then(|| {
                format!(
                    "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                    self.session
                )
                .parse()
                .ok()
            })
            .flatten()
    }
}

/// Whether `host` (a Host header) is a loopback name or address with `port`.
fn is_loopback_authority(host: &str, port: u16) -> bool {
    let (name, host_port) = match host.rsplit_once(':') {
        // `[::1]:3000`, `127.0.0.1:3000`, `localhost:3000`; not `[::1]` alone.
        Some((name, p)) if !p.contains(']') => (name, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    if host_port != Some(port) {
        return false;
    }
    let name = name.to_ascii_lowercase();
    if name == "localhost" {
        return true;
    }
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(&name);
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// A value to quote in an error: at most 100 characters of it.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_owned(),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn local_mode_answers_only_its_own_loopback_authority() {
        let g = Guard::new(AuthMode::Local, 3000);
        for ok in [
            "127.0.0.1:3000",
            "localhost:3000",
            "LOCALHOST:3000",
            "[::1]:3000",
            "127.0.0.2:3000",
        ] {
            assert_eq!(g.admit(&headers(&[("host", ok)])), Ok(()), "{ok}");
        }
        for bad in [
            "evil.example:3000",
            "127.0.0.1:3001",
            "127.0.0.1",
            "localhost",
            "[::1]",
            "localhost.evil.example:3000",
            "10.0.0.1:3000",
            "",
        ] {
            assert!(
                matches!(g.admit(&headers(&[("host", bad)])), Err(Refusal::Host(_))),
                "{bad}"
            );
        }
        assert!(matches!(g.admit(&HeaderMap::new()), Err(Refusal::Host(_))));
    }

    #[test]
    fn local_mode_refuses_other_origins_and_cross_site_fetches() {
        let g = Guard::new(AuthMode::Local, 3000);
        let host = ("host", "127.0.0.1:3000");
        assert_eq!(
            g.admit(&headers(&[host, ("origin", "http://127.0.0.1:3000")])),
            Ok(())
        );
        for origin in [
            "http://evil.example",
            "http://localhost:3000",
            "https://127.0.0.1:3000",
            "null",
        ] {
            assert!(
                matches!(
                    g.admit(&headers(&[host, ("origin", origin)])),
                    Err(Refusal::Origin(_))
                ),
                "{origin}"
            );
        }
        for site in ["cross-site", "same-site"] {
            assert!(matches!(
                g.admit(&headers(&[host, ("sec-fetch-site", site)])),
                Err(Refusal::FetchSite(_))
            ));
        }
        for site in ["same-origin", "none"] {
            assert_eq!(g.admit(&headers(&[host, ("sec-fetch-site", site)])), Ok(()));
        }
    }

    #[test]
    fn token_mode_does_not_judge_provenance() {
        let g = Guard::new(AuthMode::Tokens, 3000);
        let h = headers(&[("host", "cairn.example.org"), ("origin", "http://x")]);
        assert_eq!(g.admit(&h), Ok(()));
        assert!(g.session_cookie().is_none());
    }

    #[test]
    fn a_browser_acts_locally_only_with_the_session_cookie() {
        let g = Guard::new(AuthMode::Local, 3000);
        assert_eq!(g.local_identity(&HeaderMap::new()), LocalIdentity::User);
        let browser = headers(&[("sec-fetch-site", "same-origin")]);
        assert_eq!(g.local_identity(&browser), LocalIdentity::Anonymous);
        let cookie = g.session_cookie().unwrap();
        let pair = cookie
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        assert!(
            cookie
                .to_str()
                .unwrap()
                .contains("HttpOnly; SameSite=Strict")
        );
        let with = headers(&[
            ("sec-fetch-site", "same-origin"),
            ("cookie", &format!("theme=dark; {pair}")),
        ]);
        assert_eq!(g.local_identity(&with), LocalIdentity::User);
        let forged = headers(&[
            ("sec-fetch-site", "same-origin"),
            ("cookie", &format!("{SESSION_COOKIE}=0123")),
        ]);
        assert_eq!(g.local_identity(&forged), LocalIdentity::Anonymous);
        // Another start has another secret.
        let other = Guard::new(AuthMode::Local, 3000);
        assert_eq!(other.local_identity(&with), LocalIdentity::Anonymous);
    }
}
