//! Who is calling: a bearer API token (stored hashed; see `cairn token create`), or, in
//! local mode, the single local user, who acts as an admin with the `phi` scope.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use cairn_store::Store;

use crate::guard::LocalIdentity;

/// What a role may do; each includes the ones before it.
// With the `clap` feature, also the value of `cairn token create --role`. The variants' docs
// are both the GraphQL descriptions and the command line's help.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, async_graphql::Enum)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Role {
    /// Reads the catalog, runs and backfills.
    Viewer,
    /// Also launches and cancels backfills and runs, and reports materializations.
    Operator,
    /// Also manages SLAs, dynamic partitions and tokens, and reads the audit log.
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }

    /// As the store, the API and the command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's id (None in local mode).
    pub token_id: Option<String>,
    pub name: String,
    pub role: Role,
    /// May see PHI details: metadata values, run logs, sensitive partition keys.
    pub phi: bool,
    /// The assets whose sensitive partition keys this request showed the caller.
    pub keys_shown: KeysShown,
}

/// Assets whose sensitive partition keys were shown to a phi caller, audited when the
/// operation ends (`schema::keys_audit`).
#[derive(Debug, Clone, Default)]
pub struct KeysShown(Arc<Mutex<BTreeSet<String>>>);

impl KeysShown {
    pub fn record(&self, asset: &str) {
        let mut shown = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !shown.contains(asset) {
            shown.insert(asset.to_owned());
        }
    }

    /// The assets recorded so far, in key order; the record starts over.
    pub fn take(&self) -> Vec<String> {
        let mut shown = self.0.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *shown).into_iter().collect()
    }
}

impl Caller {
    pub fn local() -> Self {
        Self {
            token_id: None,
            name: "local".into(),
            role: Role::Admin,
            phi: true,
            keys_shown: KeysShown::default(),
        }
    }

    /// How the audit log names this caller.
    pub fn actor(&self) -> String {
        match &self.token_id {
            Some(id) => format!("token:{id} ({})", self.name),
            None => "local".into(),
        }
    }
}

/// How requests are authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request needs a valid token.
    Tokens,
    /// A request without a token is the local user (the server listens on loopback only);
    /// a request with one is that token's caller.
    Local,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "missing bearer token (send `Authorization: Bearer <token>`; create one with `cairn token create`)"
    )]
    Missing,
    #[error("invalid or revoked token")]
    Invalid,
    #[error(
        "this browser has no local session: open this server's own page (it sets one), or send `Authorization: Bearer <token>`"
    )]
    NoSession,
    #[error("the token names an unknown role {0:?}")]
    UnknownRole(String),
    #[error(transparent)]
    Store(#[from] cairn_store::Error),
}

/// The caller for an `Authorization` header value (its raw bytes, or its absence).
/// `local` says whether a tokenless request may act as the local user (see
/// `guard::Guard::local_identity`); it matters in local mode only.
pub async fn authenticate(
    store: &Store,
    mode: AuthMode,
    authorization: Option<&[u8]>,
    local: LocalIdentity,
) -> Result<Caller, AuthError> {
    let header = match authorization {
        None => None,
        // A header that is not text is not a credential, and never "no credential".
        Some(bytes) => Some(std::str::from_utf8(bytes).map_err(|_| AuthError::Invalid)?),
    };
    let Some(header) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return match (mode, local) {
            (AuthMode::Local, LocalIdentity::User) => Ok(Caller::local()),
            (AuthMode::Local, LocalIdentity::Anonymous) => Err(AuthError::NoSession),
            (AuthMode::Tokens, _) => Err(AuthError::Missing),
        };
    };
    let secret = bearer_secret(header).ok_or(AuthError::Invalid)?;
    let token = store
        .verify_token(secret)
        .await?
        .ok_or(AuthError::Invalid)?;
    let role =
        Role::parse(&token.role).ok_or_else(|| AuthError::UnknownRole(token.role.clone()))?;
    Ok(Caller {
        token_id: Some(token.id),
        name: token.name,
        role,
        phi: token.phi,
        keys_shown: KeysShown::default(),
    })
}

/// The secret of a `Bearer SECRET` value; the scheme is case-insensitive (RFC 9110).
fn bearer_secret(header: &str) -> Option<&str> {
    let (scheme, secret) = header.split_once(char::is_whitespace)?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for h in ["Bearer abc", "bearer abc", "BEARER abc", "BeArEr   abc "] {
            assert_eq!(bearer_secret(h.trim()), Some("abc"), "{h}");
        }
        for h in ["Basic abc", "Bearer", "Bearerabc", "abc"] {
            assert_eq!(bearer_secret(h), None, "{h}");
        }
    }
}
