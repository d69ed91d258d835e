//! The pages this server serves, from `ui/` embedded in the binary at build time (no CDN:
//! they work on a network without internet access). A page sets the local session cookie
//! in local mode (see `guard`), which is how its requests act as the local user.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::Code;
use crate::{AppState, error_response};

#[derive(rust_embed::Embed)]
#[folder = "../../ui/"]
#[exclude = "*.md"]
struct Ui;

/// `/`: the web UI (`ui/index.html`; its modules and styles load from `/static/`). It is
/// one page: views are chosen by the URL's fragment (`#/asset/KEY`, `#/runs`...).
pub async fn home(State(state): State<Arc<AppState>>) -> Response {
    page(&state, "index.html")
}

/// `/graphiql`: the GraphQL explorer (GraphiQL, vendored under `ui/vendor/`).
pub async fn graphiql(State(state): State<Arc<AppState>>) -> Response {
    page(&state, "graphiql/index.html")
}

/// A page of the server's own, with the local session cookie in local mode.
fn page(state: &AppState, path: &str) -> Response {
    let mut response = serve(path);
    if let Some(cookie) = state.guard.session_cookie() {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `/static/PATH`: a file of `ui/`.
pub async fn file(Path(path): Path<String>) -> Response {
    serve(&path)
}

fn serve(path: &str) -> Response {
    let Some(file) = Ui::get(path) else {
        return error_response(StatusCode::NOT_FOUND, Code::NotFound, "no such file");
    };
    let mime = file.metadata.mimetype();
    let content_type = if mime.starts_with("text/") || mime == "application/javascript" {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    };
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_str(&content_type)
                    .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            ),
            // Revalidated on each load (cheap: the ETag), so a new binary's files are used.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                header::ETAG,
                HeaderValue::from_str(&format!("\"{}\"", hex(&file.metadata.sha256_hash())))
                    .unwrap_or(HeaderValue::from_static("\"\"")),
            ),
        ],
        file.data,
    )
        .into_response()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
