//! The application as one tower service: axum's handler service for
//! [`handle`] (every path and method reaches the same pipeline; 405 for
//! unsupported methods is decided there, with the right `Allow`), wrapped in
//! tower-http's `CatchPanicLayer`, which turns a bug that panics into a plain
//! 500 for that one request.
//!
//! Why no `Router`: the app has exactly one route, and routing through
//! `Router` (path match, method router, boxed route service, boxed future)
//! measured about 1 µs more per request than calling the handler service
//! directly, around 10% of the whole per-request cost at 1 KiB (README,
//! "Performance").

use crate::handler::{App, handle};
use axum::handler::Handler;
use http::Request;
use std::convert::Infallible;
use std::sync::Arc;
use tower::{Layer, Service, ServiceExt};
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer};

/// Turns a panic into the 500 response.
pub type PanicHandler = fn(Box<dyn std::any::Any + Send>) -> http::Response<String>;

/// Builds the service over the shared application state.
#[allow(clippy::type_complexity)]
pub fn service<B>(
    app: Arc<App>,
) -> CatchPanic<
    impl Service<Request<B>, Response = axum::response::Response, Error = Infallible, Future = impl Send>
    + Clone
    + Send
    + Sync,
    PanicHandler,
>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let inner = handle.with_state(app).map_request(|req: Request<B>| req.map(axum::body::Body::new));
    let on_panic: PanicHandler = on_panic;
    CatchPanicLayer::custom(on_panic).layer(inner)
}

fn on_panic(_: Box<dyn std::any::Any + Send + 'static>) -> http::Response<String> {
    tracing::error!("request handler panicked");
    let mut response = http::Response::new("500 internal server error\n".to_owned());
    *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    response
}
