//! The axum application: one fallback route to the handler, so every path and
//! method reaches the same pipeline (405 for unsupported methods is decided
//! there, with the right `Allow`). tower-http's `CatchPanicLayer` turns a bug
//! that panics into a plain 500 for that one request, without a message.

use crate::handler::{App, handle};
use axum::Router;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;

/// Builds the router over the shared application state.
pub fn router(app: Arc<App>) -> Router {
    Router::new().fallback(handle).with_state(app).layer(CatchPanicLayer::custom(on_panic))
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> http::Response<String> {
    tracing::error!("request handler panicked");
    let mut response = http::Response::new("500 internal server error\n".to_owned());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}
