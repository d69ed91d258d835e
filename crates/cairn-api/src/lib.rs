//! The HTTP server `cairn up` runs: `/graphql` (the API; `/graphql/ws` for
//! subscriptions), `/graphiql` (an explorer page, embedded in the binary), `/healthz`
//! (liveness: is the store reachable, what is this process), `/readyz` (readiness: the store
//! answers and takes writes, the reconciler passed recently; [`ready`]) and `/metrics`
//! (Prometheus text through `prometheus-client`; [`metrics`]).
//!
//! Every request first passes [`guard`] (in local mode: the Host, the Origin, the
//! session cookie) and leaves with the security headers of [`respond_securely`];
//! [`http`] bounds and parses GraphQL requests, [`serve`] bounds connections.

pub mod auth;
pub mod error;
pub mod guard;
pub mod http;
pub mod metrics;
pub mod ready;
pub mod schema;
pub mod serve;
mod ui;
mod ws;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_store::Store;

pub use auth::{AuthMode, Caller, Role};
pub use guard::Guard;
pub use schema::{Api, CairnSchema};

/// What the handlers share.
pub struct AppState {
    pub store: Store,
    /// This process's worker id.
    pub worker: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub schema: CairnSchema,
    /// The reconciler (its view, ticks and pulse for `/metrics` and `/readyz`).
    pub reconciler: cairn_engine::Handle,
    /// Local mode or tokens, and the checks that go with them.
    pub guard: Guard,
    pub limits: Limits,
    /// The process's degraded mode (the store refusing writes), for `/readyz`.
    pub write_health: cairn_store::WriteHealth,
}

/// Bounds on what one request may cost the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// A GraphQL request running longer is answered with a TIMEOUT error.
    pub request_timeout: Duration,
    /// The largest request body read; a larger one is answered 413 unread.
    pub max_body: usize,
    /// A websocket that has not sent `connection_init` by then is closed.
    pub ws_init_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_body: 1 << 20,
            ws_init_timeout: Duration::from_secs(10),
        }
    }
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
        .route("/graphql", get(http::graphql).post(http::graphql))
        .route("/graphql/ws", get(ws::graphql_ws))
        .route("/graphiql", get(ui::graphiql))
        .route("/", get(ui::home))
        .route("/static/{*path}", get(ui::file))
        .route("/healthz", get(healthz))
        .route("/readyz", get(ready::readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            respond_securely,
        ))
        .with_state(state)
}

/// A GraphQL-shaped error response outside of execution (provenance, authentication,
/// transport, timeout): every error has `extensions.code`.
pub(crate) fn error_response(status: StatusCode, code: error::Code, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({
            "data": null,
            "errors": [{ "message": message, "extensions": { "code": code.as_str() } }],
        })),
    )
        .into_response()
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, error::Code::NotFound, "no such page")
}

/// The content security policy of every response: only this server's own scripts,
/// styles and connections; no framing, no plugins, no form posts elsewhere.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; font-src 'self' data:; connect-src 'self'; manifest-src 'self'; \
frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Turns away requests the guard refuses (before any body is read), and puts the
/// security headers on every response.
async fn respond_securely(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = match state.guard.admit(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(%refusal, uri = %request.uri().path(), "request refused");
            error_response(
                StatusCode::FORBIDDEN,
                error::Code::Forbidden,
                &refusal.to_string(),
            )
        }
    };
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// 200 with a JSON summary when the store answers, 503 otherwise.
async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.run_counts().await {
        Ok(counts) => {
            let runs: serde_json::Map<String, serde_json::Value> = counts
                .into_iter()
                .map(|c| (c.status, c.count.into()))
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

/// Prometheus text exposition ([`metrics`]); 503 when the store does not answer.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    match metrics::render(&state).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "/metrics");
            (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use std::time::Instant;
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
        let request = Request::get(uri)
            .header("host", "127.0.0.1:80")
            .body(Body::empty())
            .unwrap();
        let (status, body) = send(app, request).await;
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
        let reconciler = cairn_engine::Handle::detached(store.clone(), view);
        let schema = schema::build(Api {
            store: store.clone(),
            reconciler: reconciler.clone(),
        });
        Arc::new(AppState {
            store: store.clone(),
            reconciler,
            worker: "w".into(),
            started_at: chrono::Utc::now(),
            schema,
            guard: Guard::new(auth, 80),
            limits: Limits {
                request_timeout,
                ..Limits::default()
            },
            write_health: Default::default(),
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
            .header("host", "127.0.0.1:80")
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
        let view = cairn_engine::LiveView::new();
        let app = router(state_viewing(
            &store,
            AuthMode::Tokens,
            Duration::from_secs(5),
            view.clone(),
        ));
        view.ticked();
        let (status, body) = get_text(app.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["runs"]["queued"], 1);
        let (status, body) = get_text(app.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains("cairn_runs{asset=\"a/b\",status=\"queued\"} 1\n"),
            "{body}"
        );
        assert!(body.contains("cairn_reconciler_ticks_total 1\n"), "{body}");
        store.close().await;
        let (status, _) = get_text(app.clone(), "/healthz").await;
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "a closed store is unhealthy"
        );
        let (status, _) = get_text(app, "/metrics").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    }

    /// `/readyz` names every problem it finds; a process without a reconciler is not failed
    /// for it (the reconciler's own cases are in `tests/metrics.rs` and `ready.rs`).
    #[tokio::test]
    async fn readyz_names_each_problem() {
        let (_dir, store) = temp_store().await;
        let state = test_state(&store);
        let app = router(state.clone());
        let (status, body) = get_text(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["store"], "reachable");
        assert_eq!(v["writes"], "accepted");
        assert_eq!(v["reconciler"]["state"], "none", "{v}");

        // Degraded: 503 with the reason, while /healthz stays 200.
        assert!(state.write_health.report(&cairn_store::Error::Unwritable {
            path: "c.db".into(),
            cause: "attempt to write a readonly database".into(),
        }));
        let (status, body) = get_text(app.clone(), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], false);
        assert_eq!(v["fault"], "readonly", "{v}");
        assert_eq!(v["writes"]["fault"], "readonly", "{v}");
        assert!(
            v["problems"][0].as_str().unwrap().contains("read-only"),
            "{v}"
        );
        assert_eq!(get_text(app.clone(), "/healthz").await.0, StatusCode::OK);

        store.close().await;
        let (status, body) = get_text(app, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(v["store"]["error"].is_string(), "{v}");
        assert_eq!(v["problems"].as_array().unwrap().len(), 2, "{v}");
    }
}
