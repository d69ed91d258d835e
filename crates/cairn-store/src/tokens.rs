//! API tokens (stored as sha256 hashes of their secrets) and the audit log, which every
//! change made on someone's behalf writes in its own transaction.

use chrono::{DateTime, Utc};

use crate::backend::Backend;
use crate::db::{Conn, Db, Query};
use crate::derived::{json, token_hash};
use crate::error::Result;
use crate::types::{ApiToken, AuditRecord, NewAudit, from_micros, new_id, to_micros};
use crate::write_tx::WriteTx;

const TOKEN_COLUMNS: &str = "id, name, role, phi, created_at, revoked_at";

/// A row of `api_tokens`, in [`TOKEN_COLUMNS`]' order.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: String,
    name: String,
    role: String,
    phi: bool,
    created_at: i64,
    revoked_at: Option<i64>,
}

impl From<TokenRow> for ApiToken {
    fn from(r: TokenRow) -> Self {
        ApiToken {
            id: r.id,
            name: r.name,
            role: r.role,
            phi: r.phi,
            created_at: from_micros(r.created_at),
            revoked_at: r.revoked_at.map(from_micros),
        }
    }
}

/// A row of `audit_log`.
#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: i64,
    actor: String,
    action: String,
    target: String,
    details: String,
}

/// A token secret: 32 random bytes from two v4 UUIDs (the OS RNG), hex, with a prefix
/// that makes leaked tokens easy to grep for.
fn new_secret() -> String {
    let a = uuid::Uuid::new_v4();
    let b = uuid::Uuid::new_v4();
    format!("cairn_{}{}", a.simple(), b.simple())
}

impl<DB: Db> Backend<DB> {
    /// Creates an API token; returns it and its secret, which is shown once and stored
    /// only as a sha256 hash.
    pub(crate) async fn create_token(
        &self,
        name: &str,
        role: &str,
        phi: bool,
        at: DateTime<Utc>,
        audit: impl FnOnce(&ApiToken) -> NewAudit + Send,
    ) -> Result<(ApiToken, String)> {
        let id = new_id();
        let secret = new_secret();
        let mut tx = self.begin_write().await?;
        let q = Query::new(
            "INSERT INTO api_tokens (id, name, role, phi, token_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&id)
        .bind(name)
        .bind(role)
        .bind(phi)
        .bind(token_hash(&secret))
        .bind(to_micros(at));
        tx.execute(&q).await?;
        let token = ApiToken {
            id,
            name: name.to_owned(),
            role: role.to_owned(),
            phi,
            created_at: at,
            revoked_at: None,
        };
        Self::audit_in(&mut tx, &audit(&token)).await?;
        tx.commit().await?;
        Ok((token, secret))
    }

    /// The live token with this secret, if any.
    pub(crate) async fn verify_token(&self, secret: &str) -> Result<Option<ApiToken>> {
        let q = Query::new(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        ))
        .bind(token_hash(secret));
        let row: Option<TokenRow> = self.fetch_optional(&q).await?;
        Ok(row.map(Into::into))
    }

    /// Revokes a live token; audited only when it was live. Returns whether it was.
    pub(crate) async fn revoke_token(
        &self,
        id: &str,
        at: DateTime<Utc>,
        audit: &NewAudit,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let q = Query::new(
            "UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(to_micros(at))
        .bind(id);
        let revoked = tx.execute(&q).await? == 1;
        if revoked {
            Self::audit_in(&mut tx, audit).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    pub(crate) async fn tokens(&self) -> Result<Vec<ApiToken>> {
        let q = Query::new(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ));
        let rows: Vec<TokenRow> = self.fetch_all(&q).await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Appends to the audit log (never pruned). An action the store performs takes its
    /// record as an argument instead, and writes both in one transaction.
    pub(crate) async fn audit(&self, record: &NewAudit) -> Result<i64> {
        let mut tx = self.begin_write().await?;
        let id = Self::audit_in(&mut tx, record).await?;
        tx.commit().await?;
        Ok(id)
    }

    pub(crate) async fn audit_in(tx: &mut WriteTx<DB>, record: &NewAudit) -> Result<i64> {
        let q = Query::new(
            "INSERT INTO audit_log (at, actor, action, target, details) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(to_micros(record.at))
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.target)
        .bind(record.details.to_string());
        let (id,): (i64,) = tx.fetch_one(&q).await?;
        Ok(id)
    }

    /// Audit records after `after_id`, oldest first.
    pub(crate) async fn audit_log(&self, after_id: i64, limit: u32) -> Result<Vec<AuditRecord>> {
        let q = Query::new(
            "SELECT id, at, actor, action, target, details FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(i64::from(limit.clamp(1, 10_000)));
        let rows: Vec<AuditRow> = self.fetch_all(&q).await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditRecord {
                    id: r.id,
                    at: from_micros(r.at),
                    actor: r.actor,
                    action: r.action,
                    target: r.target,
                    details: json(&r.details, "audit_log")?,
                })
            })
            .collect()
    }
}
