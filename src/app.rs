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

use crate::handler::{Scope, handle};
use axum::handler::Handler;
use http::Request;
use std::convert::Infallible;
use tower::{Layer, Service, ServiceExt};
use tower_http::catch_panic::{CatchPanic, CatchPanicLayer, ResponseForPanic};

/// Turns a panic into a plain 500 response, logged, with no message.
#[derive(Debug, Clone, Copy, Default)]
pub struct PanicTo500;

impl ResponseForPanic for PanicTo500 {
    type ResponseBody = String;

    fn response_for_panic(&mut self, _: Box<dyn std::any::Any + Send + 'static>) -> http::Response<String> {
        tracing::error!("request handler panicked");
        let mut response = http::Response::new("500 internal server error\n".to_owned());
        *response.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        response
    }
}

/// Builds the service for one connection.
#[allow(clippy::type_complexity)]
pub fn service<B>(
    scope: Scope,
) -> CatchPanic<
    impl Service<Request<B>, Response = axum::response::Response, Error = Infallible, Future = impl Send>
    + Clone
    + Send
    + Sync,
    PanicTo500,
>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    service_with(handle, scope)
}

/// The service around any handler: [`service`] with `handle`, and tests
/// with a handler that panics, to check the layer that turns it into a 500.
#[allow(clippy::type_complexity)]
pub fn service_with<H, T, B>(
    handler: H,
    scope: Scope,
) -> CatchPanic<
    impl Service<Request<B>, Response = axum::response::Response, Error = Infallible, Future = impl Send>
    + Clone
    + Send
    + Sync,
    PanicTo500,
>
where
    H: Handler<T, Scope> + Sync,
    T: 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    // The request body is never read (GET and HEAD): it is dropped here, as
    // the handler would drop it, and an empty body (a zero-sized value, so
    // no allocation) stands in for it.
    let inner =
        handler.with_state(scope).map_request(|req: Request<B>| req.map(|_| axum::body::Body::empty()));
    CatchPanicLayer::custom(PanicTo500).layer(inner)
}
