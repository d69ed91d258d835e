//! The audit log, API tokens, and the caller.

use super::*;
use crate::schema::Int64;

#[derive(SimpleObject)]
pub struct AuditEntry {
    pub id: Int64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: Key,
    pub details: Json<serde_json::Value>,
}

#[derive(SimpleObject)]
pub struct AuditPage {
    pub items: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

#[derive(SimpleObject)]
pub struct ApiToken {
    pub id: String,
    pub name: String,
    pub role: String,
    pub phi: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl From<cairn_store::ApiToken> for ApiToken {
    fn from(t: cairn_store::ApiToken) -> Self {
        Self {
            id: t.id,
            name: t.name,
            role: t.role,
            phi: t.phi,
            created_at: t.created_at,
            revoked_at: t.revoked_at,
        }
    }
}

/// The caller, as the server sees them.
#[derive(SimpleObject)]
pub struct Me {
    pub name: String,
    pub role: crate::auth::Role,
    pub phi: bool,
    pub token_id: Option<String>,
}
