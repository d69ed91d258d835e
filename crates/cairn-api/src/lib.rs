//! The HTTP server `cairn up` runs: `/healthz` (is the store reachable, what is this
//! process) and `/metrics` (Prometheus text). The GraphQL API and the UI mount here.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use cairn_store::Store;

/// What the handlers share.
pub struct AppState {
    pub store: Store,
    /// This process's worker id.
    pub worker: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
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

    async fn get_text(app: Router, uri: &str) -> (StatusCode, String) {
        let res = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
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
        let app = router(Arc::new(AppState {
            store: store.clone(),
            worker: "w".into(),
            started_at: now,
        }));
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
