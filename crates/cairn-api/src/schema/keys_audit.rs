//! Audits real sensitive partition keys shown to a phi caller. Keys appear in many fields
//! (health ranges, histories, lineage, runs, backfill targets), so rather than audit each
//! field, [`types::masks_keys`](super::types::masks_keys) records the asset in the caller's
//! [`KeysShown`] and this extension writes one `phi.read` per asset when the operation
//! ends, before its response leaves: over HTTP and over the websocket alike. Subscriptions
//! do not pass through here; `runStatus` calls [`audit_keys_shown`] per update.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextExecute};
use async_graphql::{Response, ServerError};
use cairn_store::Store;

use super::Api;
use crate::auth::{Caller, KeysShown};
use crate::error::Code;

pub struct KeysAudit;

impl ExtensionFactory for KeysAudit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(KeysAudit)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for KeysAudit {
    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let response = next.run(ctx, operation_name).await;
        let (Some(caller), Some(api)) = (ctx.data_opt::<Caller>(), ctx.data_opt::<Api>()) else {
            return response;
        };
        match audit_keys_shown(&api.store, &caller.actor(), &caller.keys_shown).await {
            Ok(()) => response,
            Err(e) => {
                // The response shows PHI that could not be audited: it is not sent.
                tracing::error!(error = %e, "auditing a read of sensitive partition keys");
                let mut error = ServerError::new(
                    "the audit log is unavailable: this response, which shows PHI, is withheld (a change the operation made was applied, with its audit record)",
                    None,
                );
                error
                    .extensions
                    .get_or_insert_with(Default::default)
                    .set("code", Code::Internal.as_str());
                Response::from_errors(vec![error])
            }
        }
    }
}

/// One `phi.read` per asset whose sensitive partition keys were shown to the caller.
pub(crate) async fn audit_keys_shown(
    store: &Store,
    actor: &str,
    keys_shown: &KeysShown,
) -> cairn_store::Result<()> {
    let assets = keys_shown.take();
    for (i, asset) in assets.iter().enumerate() {
        let written = store
            .audit(&cairn_store::NewAudit {
                at: chrono::Utc::now(),
                actor: actor.to_owned(),
                action: "phi.read".into(),
                target: asset.clone(),
                details: serde_json::json!({ "what": "partition keys" }),
            })
            .await;
        if let Err(e) = written {
            // Not written: back in the record, for the next operation that ends on this
            // caller (a websocket's operations share it) to write or be withheld too.
            assets[i..].iter().for_each(|a| keys_shown.record(a));
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record that could not be written stays in the caller's record: the next
    /// operation to end writes it, or is withheld too.
    #[tokio::test]
    async fn unwritten_reads_stay_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let store = cairn_store::open(&url).await.unwrap();
        let shown = KeysShown::default();
        shown.record("clinical/encounters");
        shown.record("clinical/summary");
        store.close().await;
        assert!(audit_keys_shown(&store, "local", &shown).await.is_err());
        assert_eq!(shown.take(), ["clinical/encounters", "clinical/summary"]);

        let store = cairn_store::open(&url).await.unwrap();
        shown.record("clinical/encounters");
        audit_keys_shown(&store, "local", &shown).await.unwrap();
        assert!(shown.take().is_empty());
        let log = store.audit_log(0, 10).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(
            (log[0].action.as_str(), log[0].target.as_str()),
            ("phi.read", "clinical/encounters")
        );
    }
}
