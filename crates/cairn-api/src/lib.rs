//! The HTTP server `cairn up` runs: `/graphql` (the API; `/graphql/ws` for
//! subscriptions), `/graphiql` (an explorer page), `/healthz` (is the store reachable,
//! what is this process) and `/metrics` (Prometheus text).

pub mod auth;
pub mod error;
pub mod schema;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::http::GraphiQLSource;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use cairn_store::Store;

pub use auth::{AuthMode, Caller, Role};
pub use schema::{Api, CairnSchema};

/// What the handlers share.
pub struct AppState {
    pub store: Store,
    /// This process's worker id.
    pub worker: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub schema: CairnSchema,
    pub auth: AuthMode,
    /// A GraphQL request running longer is answered with a TIMEOUT error.
    pub request_timeout: Duration,
}

impl AppState {
    /// The schema as requests reach it: PHI keys an operation shows are audited.
    fn audited_schema(&self) -> schema::AuditedSchema {
        schema::AuditedSchema {
            schema: self.schema.clone(),
            store: self.store.clone(),
        }
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/graphql", get(graphql).post(graphql))
        .route("/graphql/ws", get(graphql_ws))
        .route("/graphiql", get(graphiql))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// A GraphQL error response outside of execution (authentication, timeout).
fn error_response(status: StatusCode, code: error::Code, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "data": null,
            "errors": [{ "message": message, "extensions": { "code": code.as_str() } }],
        })),
    )
        .into_response()
}

async fn graphql(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let started = Instant::now();
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match auth::authenticate(&state.store, state.auth, authorization).await {
        Ok(c) => c,
        Err(auth::AuthError::Store(e)) => {
            tracing::error!(error = %e, "authenticating a request");
            return error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                error::Code::Internal,
                "the store is unavailable",
            );
        }
        Err(e) => {
            return error_response(
                StatusCode::UNAUTHORIZED,
                error::Code::Unauthenticated,
                &e.to_string(),
            );
        }
    };
    let request = request.into_inner();
    let is_mutation = carries_mutation(&request.query);
    let schema = state.audited_schema();
    // Run in a task of its own: a timed-out mutation is not cut short between its write
    // and its audit record; it completes, and only queries are abandoned.
    let mut execution = tokio::spawn(async move {
        async_graphql::Executor::execute(&schema, request.data(caller)).await
    });
    // A query is abandoned with its client too (a dropped connection drops this handler).
    let _abandon = (!is_mutation).then(|| AbortOnDrop(execution.abort_handle()));
    let mut response = match tokio::time::timeout(state.request_timeout, &mut execution).await {
        Ok(Ok(mut r)) => {
            // Parse and validation errors (syntax, depth, complexity) have no code of
            // their own; every error carries one.
            for e in &mut r.errors {
                if e.extensions
                    .as_ref()
                    .is_none_or(|x| x.get("code").is_none())
                {
                    e.extensions
                        .get_or_insert_with(Default::default)
                        .set("code", error::Code::BadRequest.as_str());
                }
            }
            GraphQLResponse::from(r).into_response()
        }
        Ok(Err(e)) => {
            tracing::error!(error = %e, "a GraphQL request panicked");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                error::Code::Internal,
                "internal error",
            )
        }
        Err(_) => {
            let message = if is_mutation {
                format!(
                    "the request took longer than {:?}; its mutation goes on to completion (see the audit log)",
                    state.request_timeout
                )
            } else {
                // Abandoned by `_abandon` as this handler returns.
                format!("the request took longer than {:?}", state.request_timeout)
            };
            error_response(StatusCode::OK, error::Code::Timeout, &message)
        }
    };
    // Server time, for clients and benchmarks (https://www.w3.org/TR/server-timing/).
    let micros = started.elapsed().as_micros();
    if let Ok(v) = format!("graphql;dur={}.{:03}", micros / 1000, micros % 1000).parse() {
        response.headers_mut().insert("server-timing", v);
    }
    response
}

/// Aborts a task when dropped (a no-op once it has finished).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Whether a request's document holds a mutation (a document that does not parse holds
/// none: it fails before anything runs).
fn carries_mutation(query: &str) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let Ok(doc) = async_graphql::parser::parse_query(query) else {
        return false;
    };
    match &doc.operations {
        DocumentOperations::Single(op) => op.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(ops) => {
            ops.values().any(|op| op.node.ty == OperationType::Mutation)
        }
    }
}

/// Subscriptions. The token goes in the `connection_init` payload
/// (`{"Authorization": "Bearer ..."}`) or the upgrade request's header.
async fn graphql_ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let header_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            let schema = state.audited_schema();
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let from_payload = ["Authorization", "authorization"]
                        .iter()
                        .find_map(|k| payload.get(*k).and_then(|v| v.as_str()).map(str::to_owned));
                    let authorization = from_payload.or(header_auth);
                    let caller =
                        auth::authenticate(&state.store, state.auth, authorization.as_deref())
                            .await
                            .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                    let mut data = async_graphql::Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve()
        })
}

async fn graphiql() -> Html<String> {
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .subscription_endpoint("/graphql/ws")
            .title("Cairn GraphQL")
            .finish(),
    )
}

/// 200 with a JSON summary when the store answers, 503 otherwise.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.run_counts().await {
        Ok(counts) => {
            let runs: serde_json::Map<String, serde_json::Value> = counts
                .into_iter()
                .map(|(status, n)| (status, n.into()))
                .collect();
            axum::Json(serde_json::json!({
                "status": "ok",
                "worker": state.worker,
                "store": format!("{:?}", state.store.dialect()).to_lowercase(),
                "started_at": state.started_at.to_rfc3339(),
                "runs": runs,
            }))
            .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "unavailable", "error": e.to_string() })),
        )
            .into_response(),
    }
}

/// Prometheus text exposition: runs by status and the process's uptime.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let counts = match state.store.run_counts().await {
        Ok(c) => c,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let mut text =
        String::from("# HELP cairn_runs Runs in the store by status.\n# TYPE cairn_runs gauge\n");
    for status in [
        "queued",
        "claimed",
        "running",
        "succeeded",
        "failed",
        "canceled",
        "interrupted",
    ] {
        let n = counts
            .iter()
            .find(|(s, _)| s == status)
            .map_or(0, |(_, n)| *n);
        text.push_str(&format!("cairn_runs{{status=\"{status}\"}} {n}\n"));
    }
    let uptime = (chrono::Utc::now() - state.started_at).num_milliseconds() as f64 / 1e3;
    text.push_str(&format!(
        "# HELP cairn_uptime_seconds Seconds since this process started.\n# TYPE cairn_uptime_seconds gauge\ncairn_uptime_seconds {uptime}\n"
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    /// The status and body of one request.
    async fn send(app: Router, request: Request<Body>) -> (StatusCode, Vec<u8>) {
        let res = app.oneshot(request).await.unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, body.to_vec())
    }

    async fn get_text(app: Router, uri: &str) -> (StatusCode, String) {
        let (status, body) = send(app, Request::get(uri).body(Body::empty()).unwrap()).await;
        (status, String::from_utf8(body).unwrap())
    }

    fn test_state(store: &Store) -> Arc<AppState> {
        state_with(store, AuthMode::Tokens, Duration::from_secs(5))
    }

    fn state_with(store: &Store, auth: AuthMode, request_timeout: Duration) -> Arc<AppState> {
        state_viewing(store, auth, request_timeout, cairn_engine::LiveView::new())
    }

    fn state_viewing(
        store: &Store,
        auth: AuthMode,
        request_timeout: Duration,
        view: cairn_engine::LiveView,
    ) -> Arc<AppState> {
        let schema = schema::build(Api {
            store: store.clone(),
            view,
            poke: Arc::default(),
        });
        Arc::new(AppState {
            store: store.clone(),
            worker: "w".into(),
            started_at: chrono::Utc::now(),
            schema,
            auth,
            request_timeout,
        })
    }

    async fn temp_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let store = cairn_store::open(&url).await.unwrap();
        (dir, store)
    }

    /// POSTs a GraphQL query; the status and the JSON body.
    async fn post(app: Router, query: &str) -> (StatusCode, serde_json::Value) {
        let body = serde_json::json!({ "query": query }).to_string();
        let request = Request::post("/graphql")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, body) = send(app, request).await;
        (status, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn catalog_queries_before_the_first_reconcile_are_not_ready() {
        let (_dir, store) = temp_store().await;
        // No view yet: `cairn up` has not loaded the log.
        let app = router(state_with(&store, AuthMode::Local, Duration::from_secs(5)));
        let (status, v) = post(app, "{ assets { total } }").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["errors"][0]["extensions"]["code"], "NOT_READY", "{v}");
    }

    #[tokio::test]
    async fn a_slow_query_times_out_and_a_slow_mutation_still_completes_audited() {
        let (dir, store) = temp_store().await;
        // The catalog is being swapped (the reconciler holds the view's lock): a query
        // waits on it past the timeout, and is abandoned.
        let live = cairn_engine::LiveView::new();
        let swapping = live.write().await;
        let app = router(state_viewing(
            &store,
            AuthMode::Local,
            Duration::from_millis(300),
            live.clone(),
        ));
        let (status, v) = post(app.clone(), "{ assets { total } }").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(v["errors"][0]["extensions"]["code"], "TIMEOUT", "{v}");
        assert!(v["data"].is_null(), "{v}");
        drop(swapping);

        // Another connection holds the write lock: a mutation waits past the timeout.
        use sqlx::Connection as _;
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let (_, v) = post(
            app,
            r#"mutation { createToken(name: "late", role: VIEWER) { secret } }"#,
        )
        .await;
        assert_eq!(v["errors"][0]["extensions"]["code"], "TIMEOUT", "{v}");
        let message = v["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("goes on to completion"), "{message}");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        // The mutation was not cut between its write and its audit record.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tokens = store.tokens().await.unwrap();
            let audit = store.audit_log(0, 100).await.unwrap();
            let audited = audit.iter().any(|a| a.action == "token.create");
            if tokens.iter().any(|t| t.name == "late") && audited {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the timed-out mutation did not complete with its audit record: {tokens:?} {audit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `schemas/schema.graphql` is the SDL this build serves; regenerate it with
    /// `CAIRN_UPDATE_SCHEMAS=1 cargo test -p cairn-api committed_sdl`.
    #[test]
    fn committed_sdl_matches_the_schema() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/schema.graphql");
        let sdl = schema::sdl();
        if std::env::var_os("CAIRN_UPDATE_SCHEMAS").is_some() {
            std::fs::write(&path, &sdl).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == sdl,
            "schemas/schema.graphql is out of date: run `CAIRN_UPDATE_SCHEMAS=1 cargo test -p cairn-api committed_sdl`"
        );
    }

    #[tokio::test]
    async fn graphql_needs_a_token_outside_local_mode() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let store = cairn_store::open(&url).await.unwrap();
        let app = router(test_state(&store));
        let (status, v) = post(app, "{ me { role } }").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(v["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    }

    #[tokio::test]
    async fn health_and_metrics_read_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("c.db").display());
        let store = cairn_store::open(&url).await.unwrap();
        let now = chrono::Utc::now();
        store
            .enqueue(&[cairn_store::NewRun::new("a/b", None, now)], now)
            .await
            .unwrap();
        let app = router(test_state(&store));
        let (status, body) = get_text(app.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["runs"]["queued"], 1);
        let (status, body) = get_text(app.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("cairn_runs{status=\"queued\"} 1\n"), "{body}");
        store.close().await;
        let (status, _) = get_text(app, "/healthz").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a closed store is unhealthy"
        );
    }
}
