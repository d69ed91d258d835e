//! GraphQL over HTTP, bounded: who is calling is settled from the headers before a byte
//! of the body is read; a body is read only up to `Limits::max_body`; mutations come only
//! as a POST of `application/json` (what a cross-site form or "simple" request cannot
//! send), and a GET serves queries. Every refusal is a GraphQL error with
//! `extensions.code`, never a Rust debug string.

use std::sync::Arc;
use std::time::Instant;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql_value::{ConstValue, Value as ParsedValue};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use crate::error::Code;
use crate::{AppState, auth, error_response};

/// The media type of GraphQL-over-HTTP responses, for clients that ask for it.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Longest string any argument may hold (bytes).
pub const MAX_STRING: usize = 64 * 1024;

/// Longest message an error carries; longer ones (that echo a huge input) are cut.
const MAX_MESSAGE: usize = 1000;

/// A transport-level refusal: its HTTP status, code and message.
struct Refused(StatusCode, Code, String);

impl Refused {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, Code::BadRequest, message.into())
    }

    fn into_response(self) -> Response {
        error_response(self.0, self.1, &self.2)
    }
}

pub async fn graphql(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let caller = match caller(&state, &headers).await {
        Ok(c) => c,
        Err(refused) => return refused.into_response(),
    };
    let request = match read_request(&state, &method, &uri, &headers, body).await {
        Ok(r) => r,
        Err(refused) => return refused.into_response(),
    };
    let doc = async_graphql::parser::parse_query(&request.query).ok();
    let operation = operation_type(doc.as_ref());
    if method == Method::GET
        && matches!(
            operation,
            Some(OperationType::Mutation | OperationType::Subscription)
        )
    {
        let mut r = Refused(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::BadRequest,
            "GET serves queries only: send mutations as a POST with Content-Type: application/json"
                .into(),
        )
        .into_response();
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    if operation == Some(OperationType::Subscription) {
        return Refused::bad("subscriptions are served over the websocket at /graphql/ws")
            .into_response();
    }
    if let Some(argument) = oversized_argument(doc.as_ref(), &request.variables) {
        return (
            StatusCode::OK,
            axum::Json(serde_json::json!({
                "data": null,
                "errors": [{
                    "message": format!("{argument}: a string argument may hold at most {MAX_STRING} bytes"),
                    "extensions": { "code": Code::BadArgument.as_str() },
                }],
            })),
        )
            .into_response();
    }
    drop(doc);
    let is_mutation = operation == Some(OperationType::Mutation);
    let schema = state.audited_schema();
    // Run in a task of its own: a timed-out mutation is not cut short between its write
    // and its audit record; it completes, and only queries are abandoned.
    let mut execution = tokio::spawn(async move {
        async_graphql::Executor::execute(&schema, request.data(caller)).await
    });
    // A query is abandoned with its client too (a dropped connection drops this handler).
    let _abandon = (!is_mutation).then(|| AbortOnDrop(execution.abort_handle()));
    let timeout = state.limits.request_timeout;
    let mut response = match tokio::time::timeout(timeout, &mut execution).await {
        Ok(Ok(r)) => graphql_response(r, &headers),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a GraphQL request panicked");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "internal error",
            )
        }
        Err(_) => {
            let message = if is_mutation {
                format!(
                    "the request took longer than {timeout:?}; its mutation goes on to completion (see the audit log)"
                )
            } else {
                // Abandoned by `_abandon` as this handler returns.
                format!("the request took longer than {timeout:?}")
            };
            error_response(StatusCode::OK, Code::Timeout, &message)
        }
    };
    // Server time, for clients and benchmarks (https://www.w3.org/TR/server-timing/).
    let micros = started.elapsed().as_micros();
    if let Ok(v) = format!("graphql;dur={}.{:03}", micros / 1000, micros % 1000).parse() {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// The caller, from the headers alone.
async fn caller(state: &AppState, headers: &HeaderMap) -> Result<crate::Caller, Refused> {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .map(HeaderValue::as_bytes);
    let local = state.guard.local_identity(headers);
    auth::authenticate(&state.store, state.guard.mode, authorization, local)
        .await
        .map_err(|e| match e {
            auth::AuthError::Store(e) => {
                tracing::error!(error = %e, "authenticating a request");
                Refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    Code::Internal,
                    "the store is unavailable".into(),
                )
            }
            e => Refused(
                StatusCode::UNAUTHORIZED,
                Code::Unauthenticated,
                e.to_string(),
            ),
        })
}

/// The GraphQL request of a GET's query string or a POST's JSON body.
async fn read_request(
    state: &AppState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
) -> Result<async_graphql::Request, Refused> {
    let bytes = match *method {
        Method::GET => {
            return async_graphql::http::parse_query_string(uri.query().unwrap_or("")).map_err(
                |e| Refused::bad(format!("the query string is not a GraphQL request: {e}")),
            );
        }
        Method::POST => {
            check_content_type(headers)?;
            read_body(state, headers, body).await?
        }
        _ => unreachable!("the router serves GET and POST only"),
    };
    let first = bytes.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        return Err(Refused::bad(
            "batched requests are not supported: send one operation per request",
        ));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Refused::bad(format!("the body is not a GraphQL request: {e}")))
}

/// Only `application/json` bodies: a cross-site form (`x-www-form-urlencoded`,
/// `multipart/form-data`) or a "simple" `text/plain` request cannot carry one without a
/// CORS preflight, which this server never answers.
fn check_content_type(headers: &HeaderMap) -> Result<(), Refused> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() == Some("application/json") {
        return Ok(());
    }
    Err(Refused(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Code::BadRequest,
        format!(
            "a GraphQL POST needs Content-Type: application/json (got {})",
            media.map_or("none".into(), |m| format!("{:?}", truncate(&m, 100)))
        ),
    ))
}

/// The body, up to the limit: a declared length over it is refused unread; a body that
/// grows past it (chunked) is refused as soon as it does, never buffered whole.
async fn read_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Refused> {
    let max = state.limits.max_body;
    let too_large = || {
        Refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge,
            format!("the request body is larger than {max} bytes"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    let read = axum::body::to_bytes(body, max);
    match tokio::time::timeout(state.limits.request_timeout, read).await {
        Ok(Ok(bytes)) => Ok(bytes.to_vec()),
        Ok(Err(e)) if is_length_limit(&e) => Err(too_large()),
        Ok(Err(_)) => Err(Refused::bad("the request body could not be read")),
        Err(_) => Err(Refused(
            StatusCode::REQUEST_TIMEOUT,
            Code::Timeout,
            "the request body was not sent in time".into(),
        )),
    }
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// The document's operation type (for a multi-operation document, the most powerful
/// of its operations: a GET may not pick a mutation out of a mixed document); `None`
/// when it does not parse (execution reports that).
fn operation_type(doc: Option<&ExecutableDocument>) -> Option<OperationType> {
    let doc = doc?;
    match &doc.operations {
        DocumentOperations::Single(op) => Some(op.node.ty),
        DocumentOperations::Multiple(ops) => {
            let types: Vec<OperationType> = ops.values().map(|op| op.node.ty).collect();
            [OperationType::Mutation, OperationType::Subscription]
                .into_iter()
                .find(|t| types.contains(t))
                .or(Some(OperationType::Query))
        }
    }
}

/// The name of the first argument (inline or a variable) holding a string longer than
/// `MAX_STRING` bytes. Resolvers hold stored values to tighter limits; this bounds
/// what any argument may cost to parse, match or echo.
fn oversized_argument(
    doc: Option<&ExecutableDocument>,
    variables: &async_graphql::Variables,
) -> Option<String> {
    fn const_oversized(v: &ConstValue) -> bool {
        match v {
            ConstValue::String(s) => s.len() > MAX_STRING,
            ConstValue::List(items) => items.iter().any(const_oversized),
            ConstValue::Object(fields) => fields
                .iter()
                .any(|(k, v)| k.len() > MAX_STRING || const_oversized(v)),
            _ => false,
        }
    }
    fn value_oversized(v: &ParsedValue) -> bool {
        match v {
            ParsedValue::String(s) => s.len() > MAX_STRING,
            ParsedValue::List(items) => items.iter().any(value_oversized),
            ParsedValue::Object(fields) => fields.values().any(value_oversized),
            _ => false,
        }
    }
    fn in_selections(set: &SelectionSet) -> Option<String> {
        set.items.iter().find_map(|item| match &item.node {
            Selection::Field(f) => f
                .node
                .arguments
                .iter()
                .find(|(_, v)| value_oversized(&v.node))
                .map(|(name, _)| name.node.to_string())
                .or_else(|| in_selections(&f.node.selection_set.node)),
            Selection::InlineFragment(i) => in_selections(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => None,
        })
    }
    if let Some((name, _)) = variables.iter().find(|(_, v)| const_oversized(v)) {
        return Some(format!("${name}"));
    }
    let doc = doc?;
    let operations: Vec<&SelectionSet> = match &doc.operations {
        DocumentOperations::Single(op) => vec![&op.node.selection_set.node],
        DocumentOperations::Multiple(ops) => {
            ops.values().map(|op| &op.node.selection_set.node).collect()
        }
    };
    operations
        .into_iter()
        .chain(doc.fragments.values().map(|f| &f.node.selection_set.node))
        .find_map(in_selections)
}

/// The executed response as JSON: every error carries a code, and no message echoes a
/// huge input back.
fn graphql_response(mut r: async_graphql::Response, headers: &HeaderMap) -> Response {
    for e in &mut r.errors {
        // Parse and validation errors (syntax, depth, complexity) have no code of
        // their own; every error carries one.
        if e.extensions
            .as_ref()
            .is_none_or(|x| x.get("code").is_none())
        {
            e.extensions
                .get_or_insert_with(Default::default)
                .set("code", Code::BadRequest.as_str());
        }
        if e.message.len() > MAX_MESSAGE {
            e.message = truncate(&e.message, MAX_MESSAGE);
        }
    }
    let content_type = if accepts_graphql_response(headers) {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    };
    let body = serde_json::to_vec(&r).unwrap_or_else(|e| {
        tracing::error!(error = %e, "serializing a GraphQL response");
        br#"{"data":null,"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}"#
            .to_vec()
    });
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    if let Some(cache) = r.cache_control.value()
        && let Ok(v) = HeaderValue::from_str(&cache)
    {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

/// Whether the client lists `application/graphql-response+json` before (or without)
/// `application/json` (GraphQL over HTTP's negotiation).
fn accepts_graphql_response(headers: &HeaderMap) -> bool {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let position = |media: &str| {
        accept
            .split(',')
            .position(|m| m.split(';').next().is_some_and(|m| m.trim() == media))
    };
    match (position(GRAPHQL_RESPONSE), position("application/json")) {
        (Some(g), Some(j)) => g < j,
        (Some(_), None) => true,
        _ => false,
    }
}

/// At most `max` bytes of `s` (on a character boundary), marked as cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

/// Aborts a task when dropped (a no-op once it has finished).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(query: &str) -> Option<OperationType> {
        operation_type(async_graphql::parser::parse_query(query).ok().as_ref())
    }

    #[test]
    fn operation_types() {
        assert_eq!(op("{ me { name } }"), Some(OperationType::Query));
        assert_eq!(
            op("mutation { revokeToken(id: \"x\") }"),
            Some(OperationType::Mutation)
        );
        assert_eq!(
            op("query A { me { name } } mutation B { revokeToken(id: \"x\") }"),
            Some(OperationType::Mutation),
            "a GET may not pick the mutation of a mixed document"
        );
        assert_eq!(op("{"), None);
    }

    #[test]
    fn oversized_arguments_are_found_inline_in_fragments_and_in_variables() {
        let long = "x".repeat(MAX_STRING + 1);
        let check = |query: &str, vars: serde_json::Value| {
            let doc = async_graphql::parser::parse_query(query).ok();
            let vars = async_graphql::Variables::from_json(vars);
            oversized_argument(doc.as_ref(), &vars)
        };
        let none = serde_json::json!({});
        assert_eq!(
            check(
                &format!("{{ asset(key: \"{}\") {{ key }} }}", "x".repeat(MAX_STRING)),
                none.clone()
            ),
            None
        );
        assert_eq!(
            check(
                &format!("{{ asset(key: \"{long}\") {{ key }} }}"),
                none.clone()
            ),
            Some("key".into())
        );
        assert_eq!(
            check(
                &format!(
                    "{{ ...F }} fragment F on Query {{ assets(search: \"{long}\") {{ total }} }}"
                ),
                none.clone()
            ),
            Some("search".into())
        );
        assert_eq!(
            check(
                &format!(
                    "{{ asset(key: \"a\") {{ runs(after: [\"{long}\"]) {{ nextCursor }} }} }}"
                ),
                none
            ),
            Some("after".into())
        );
        assert_eq!(
            check(
                "query($m: JSON) { me { name } }",
                serde_json::json!({ "m": { "a": [long] } })
            ),
            Some("$m".into())
        );
    }

    #[test]
    fn negotiation_prefers_what_the_client_lists_first() {
        let h = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT, v.parse().unwrap());
            h
        };
        assert!(accepts_graphql_response(&h(GRAPHQL_RESPONSE)));
        assert!(accepts_graphql_response(&h(
            "application/graphql-response+json, application/json;q=0.9"
        )));
        assert!(!accepts_graphql_response(&h("application/json, */*")));
        assert!(!accepts_graphql_response(&HeaderMap::new()));
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("abc", 10), "abc");
        let cut = truncate(&"é".repeat(10), 5);
        assert!(cut.starts_with("éé..."), "{cut}");
        assert!(cut.ends_with("(20 bytes in all)"), "{cut}");
    }
}
