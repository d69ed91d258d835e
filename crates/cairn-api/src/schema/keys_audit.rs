//! Audits real sensitive partition keys shown to a phi caller. Keys appear in many fields
//! (health ranges, histories, lineage, runs, backfill targets, audit targets); each is a
//! [`Key`](super::types::Key), which records its asset in the caller's [`KeysShown`] as
//! it is written into a response. [`AuditedSchema`] then writes one `phi.read` per asset
//! when an operation's response (or a subscription's update) is ready, before it leaves:
//! over HTTP and over the websocket alike.
//!
//! An executor around the schema rather than an async-graphql extension: any extension
//! puts every field's resolution through the extension chain, which cost the whole-graph
//! query 40% more time (63 to 104 ms median at 10,000 assets).

use std::any::TypeId;
use std::sync::Arc;

use async_graphql::futures_util::stream::{BoxStream, StreamExt as _};
use async_graphql::{Data, Executor, Request, Response, ServerError};
use cairn_store::Store;

use super::CairnSchema;
use crate::auth::{Caller, KeysShown};
use crate::error::Code;

/// The schema, with the keys an operation showed audited before its response leaves.
#[derive(Clone)]
pub struct AuditedSchema {
    pub schema: CairnSchema,
    pub store: Store,
}

impl Executor for AuditedSchema {
    async fn execute(&self, request: Request) -> Response {
        let caller = caller_of(&request.data).cloned();
        let response = self.schema.execute(request).await;
        audited(&self.store, caller.as_ref(), response).await
    }

    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        // The websocket's caller is in its session data, shared by the connection's
        // operations: each gets a copy with a record of its own (request data comes first),
        // so it is audited before its own response leaves, whatever the others do.
        let caller = caller_of(&request.data)
            .or_else(|| session_data.as_deref().and_then(caller_of))
            .map(|c| Caller {
                keys_shown: KeysShown::default(),
                ..c.clone()
            });
        let request = match &caller {
            Some(c) => request.data(c.clone()),
            None => request,
        };
        let store = self.store.clone();
        Executor::execute_stream(&self.schema, request, session_data)
            .then(move |response| {
                let (store, caller) = (store.clone(), caller.clone());
                async move { audited(&store, caller.as_ref(), response).await }
            })
            .boxed()
    }
}

fn caller_of(data: &Data) -> Option<&Caller> {
    data.get(&TypeId::of::<Caller>())
        .and_then(|c| c.downcast_ref::<Caller>())
}

/// The response, once the keys it showed are audited; withheld if they cannot be.
async fn audited(store: &Store, caller: Option<&Caller>, response: Response) -> Response {
    let Some(caller) = caller else {
        return response;
    };
    match audit_keys_shown(store, &caller.actor(), &caller.keys_shown).await {
        Ok(()) => response,
        Err(e) => {
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

/// One `phi.read` per asset whose sensitive partition keys were shown to the caller.
async fn audit_keys_shown(
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
