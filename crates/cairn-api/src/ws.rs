//! Subscriptions (and any operation) over the websocket at `/graphql/ws`. The upgrade
//! passed the guard (in local mode: same origin only, since browsers apply no CORS to
//! websockets). The token goes in the `connection_init` payload
//! (`{"Authorization": "Bearer ..."}`) or the upgrade request's header; a socket that
//! sends no `connection_init` within `Limits::ws_init_timeout` is closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;

use crate::error::Code;
use crate::{AppState, auth, error_response};

pub async fn graphql_ws(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    protocol: Result<GraphQLProtocol, StatusCode>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let (upgrade, protocol) = match (upgrade, protocol) {
        (Ok(u), Ok(p)) => (u, p),
        (Err(e), _) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                &format!("/graphql/ws needs a websocket upgrade: {}", e.body_text()),
            );
        }
        (Ok(_), Err(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                Code::BadRequest,
                "unsupported websocket subprotocol (use graphql-transport-ws or graphql-ws)",
            );
        }
    };
    let header_auth = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes().to_vec());
    let local = state.guard.local_identity(&headers);
    upgrade
        .protocols(async_graphql::http::ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let initialized = Arc::new(AtomicBool::new(false));
            let init_seen = initialized.clone();
            let schema = state.audited_schema();
            let init_timeout = state.limits.ws_init_timeout;
            let serve = GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    init_seen.store(true, Ordering::Release);
                    let from_payload = ["Authorization", "authorization"].iter().find_map(|k| {
                        payload
                            .get(*k)
                            .and_then(|v| v.as_str())
                            .map(|s| s.as_bytes().to_vec())
                    });
                    let authorization = from_payload.or(header_auth);
                    let caller = auth::authenticate(
                        &state.store,
                        state.guard.mode,
                        authorization.as_deref(),
                        local,
                    )
                    .await
                    .map_err(|e| async_graphql::Error::new(e.to_string()))?;
                    let mut data = async_graphql::Data::default();
                    data.insert(caller);
                    Ok(data)
                })
                .serve();
            let mut serve = std::pin::pin!(serve);
            tokio::select! {
                _ = &mut serve => return,
                _ = tokio::time::sleep(init_timeout) => {}
            }
            if initialized.load(Ordering::Acquire) {
                serve.await;
            } else {
                // Dropping the connection's future closes the socket.
                tracing::debug!("a websocket sent no connection_init in time; closed");
            }
        })
}
