//! GraphQL errors carry a machine-readable `extensions.code` and a message naming the
//! bad value. A request that fails this way has changed nothing.

use async_graphql::ErrorExtensions as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// No valid token.
    Unauthenticated,
    /// The caller's role or scope does not allow this.
    Forbidden,
    /// An asset, run, backfill or token that does not exist.
    NotFound,
    /// An argument that is malformed or out of range (a bad partition key, a reversed
    /// range, an invalid selection or SLA).
    BadArgument,
    /// The request itself is invalid: a syntax error, an unknown field, too deep or too
    /// complex (these errors come from the GraphQL engine's validation).
    BadRequest,
    /// The request body is larger than the server accepts (`--max-body`).
    PayloadTooLarge,
    /// The server has not loaded the store yet (right after start).
    NotReady,
    /// The request took longer than the server allows.
    Timeout,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::NotFound => "NOT_FOUND",
            Code::BadArgument => "BAD_ARGUMENT",
            Code::BadRequest => "BAD_REQUEST",
            Code::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Code::NotReady => "NOT_READY",
            Code::Timeout => "TIMEOUT",
            Code::Internal => "INTERNAL",
        }
    }
}

pub fn error(code: Code, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(|_, e| e.set("code", code.as_str()))
}

pub fn bad(message: impl Into<String>) -> async_graphql::Error {
    error(Code::BadArgument, message)
}

/// Refuses an argument longer than `max` bytes, naming it without echoing it.
pub fn check_len(argument: &str, value: &str, max: usize) -> async_graphql::Result<()> {
    if value.len() > max {
        return Err(bad(format!(
            "{argument}: at most {max} bytes (got {})",
            value.len()
        )));
    }
    Ok(())
}

pub fn not_found(message: impl Into<String>) -> async_graphql::Error {
    error(Code::NotFound, message)
}

/// A store error where not-found means the named thing (`unknown run "ID"`) is missing.
pub fn store_missing(e: cairn_store::Error, what: impl FnOnce() -> String) -> async_graphql::Error {
    match e {
        cairn_store::Error::NotFound(_) => not_found(what()),
        e => store(e),
    }
}

/// A change through the reconciler's handle: the store's errors as [`store`]; a stopped
/// reconciler (the server is shutting down) refused it before anything was written.
pub fn reconciler(e: cairn_engine::reconciler::Error) -> async_graphql::Error {
    match e {
        cairn_engine::reconciler::Error::Store(e) => store(e),
        e @ cairn_engine::reconciler::Error::Stopped => error(Code::NotReady, e.to_string()),
    }
}

/// Store errors: not-found and invalid input keep their meaning, the rest is internal
/// (logged with detail, reported without it).
pub fn store(e: cairn_store::Error) -> async_graphql::Error {
    match e {
        cairn_store::Error::NotFound(what) => not_found(format!("not found: {what}")),
        cairn_store::Error::Invalid(why) => bad(why),
        cairn_store::Error::IllegalTransition { run, from, to } => {
            bad(format!("run {run} is {from}; it cannot become {to}"))
        }
        e @ cairn_store::Error::IllegalBackfillTransition { .. } => bad(e.to_string()),
        other => {
            tracing::error!(error = %other, "store error in an API request");
            error(
                Code::Internal,
                "internal error (the server log has the details)",
            )
        }
    }
}
