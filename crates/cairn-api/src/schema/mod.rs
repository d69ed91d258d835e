//! The GraphQL schema: [`query`] reads the catalog, [`mutation`] acts on it,
//! [`subscription`] streams run status and logs. [`types`] holds the objects, and the
//! redaction of PHI details for callers without the `phi` scope.
//!
//! Every resolver reads the reconciler's [`LiveView`](cairn_engine::LiveView) under a
//! shared lock (no copies) and the store for history, runs and logs. Mutations change
//! what the reconciler holds only through its [`Handle`].

mod keys_audit;
pub mod mutation;
pub mod query;
pub mod scalars;
pub mod subscription;
pub mod types;

use async_graphql::{Context, Schema};
use cairn_engine::{Handle, View};
use cairn_store::Store;
use tokio::sync::RwLockReadGuard;

use crate::auth::{Caller, Role};
use crate::error::{Code, error};

pub use keys_audit::AuditedSchema;
pub use mutation::Mutation;
pub use query::Query;
pub use scalars::Int64;
pub use subscription::Subscription;

pub type CairnSchema = Schema<Query, Mutation, Subscription>;

/// Most items one page returns; larger `first` arguments are refused.
pub const MAX_PAGE: usize = 500;

/// Longest identifier an argument may hold (bytes): asset keys, partition keys, ids,
/// token names, code and data versions.
pub const MAX_NAME: usize = 255;
/// Longest selection expression (bytes).
pub const MAX_SELECTION: usize = 4096;
/// Largest metadata a report may carry (bytes of JSON).
pub const MAX_METADATA: usize = 64 * 1024;
/// Most keys one request may name.
pub const MAX_KEYS: usize = 10_000;

/// What resolvers share.
pub struct Api {
    pub store: Store,
    /// The reconciler: its view for reading, and the way to change what it holds.
    pub reconciler: Handle,
}

/// Depth and complexity limits keep one request from walking the whole store.
pub fn build(api: Api) -> CairnSchema {
    Schema::build(Query, Mutation, Subscription)
        .data(api)
        .limit_depth(16)
        .limit_complexity(50_000)
        .finish()
}

/// The SDL, as committed in `schemas/schema.graphql`.
pub fn sdl() -> String {
    let schema = Schema::build(Query, Mutation, Subscription).finish();
    format!(
        "# Cairn's GraphQL API. Generated: `CAIRN_UPDATE_SCHEMAS=1 cargo test -p cairn-api committed_sdl`.\n\n{}",
        schema.sdl()
    )
}

pub(crate) fn api<'a>(ctx: &Context<'a>) -> &'a Api {
    ctx.data_unchecked::<Api>()
}

pub(crate) fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_unchecked::<Caller>()
}

/// The caller, if their role is at least `role`.
pub(crate) fn require<'a>(ctx: &Context<'a>, role: Role) -> async_graphql::Result<&'a Caller> {
    let caller = caller(ctx);
    if caller.role >= role {
        Ok(caller)
    } else {
        Err(error(
            Code::Forbidden,
            format!(
                "this needs the {} role; the caller is {}",
                role.as_str(),
                caller.role.as_str()
            ),
        ))
    }
}

/// The reconciler's view, shared.
pub(crate) async fn view<'a>(
    ctx: &Context<'a>,
) -> async_graphql::Result<RwLockReadGuard<'a, View>> {
    let guard = api(ctx).reconciler.view().read().await;
    RwLockReadGuard::try_map(guard, Option::as_ref).map_err(|_| {
        error(
            Code::NotReady,
            "the catalog is still loading the store; retry in a moment",
        )
    })
}

/// Appends to the audit log a read of PHI details; a failure fails the request (an
/// unaudited PHI read must not happen). Mutations hand their [`record`] to the store,
/// which writes it in the transaction of the change.
pub(crate) async fn audit(
    ctx: &Context<'_>,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> async_graphql::Result<()> {
    api(ctx)
        .store
        .audit(&record(ctx, action, target, details))
        .await
        .map_err(crate::error::store)?;
    Ok(())
}

/// An audit record of the caller's, now.
pub(crate) fn record(
    ctx: &Context<'_>,
    action: &str,
    target: &str,
    details: serde_json::Value,
) -> cairn_store::NewAudit {
    cairn_store::NewAudit {
        at: chrono::Utc::now(),
        actor: caller(ctx).actor(),
        action: action.into(),
        target: target.into(),
        details,
    }
}

/// Checks a page size.
pub(crate) fn page_size(first: Option<i32>, default: usize) -> async_graphql::Result<usize> {
    match first {
        None => Ok(default),
        Some(n) if n >= 1 && n as usize <= MAX_PAGE => Ok(n as usize),
        Some(n) => Err(crate::error::bad(format!(
            "first: {n} is out of range (1..={MAX_PAGE})"
        ))),
    }
}
