//! The application as one tower service: [`FileService`] runs the pipeline
//! (`handler`; every path and method reaches it, and 405 for unsupported
//! methods is decided there, with the right `Allow`), wrapped in
//! tower-http's `CatchPanicLayer`, which turns a bug that panics into a
//! plain 500 for that one request.
//!
//! Why not an axum `Router` or handler: the app has exactly one route, and
//! most requests wait for nothing. `Router` (path match, method router,
//! boxed route service, boxed future) measured about 1 µs more per request
//! than a handler service; a handler still boxes one future per request,
//! and moves the pipeline's whole state into it. [`FileService`] runs the
//! pipeline inside `call` and answers a hit with a ready future; only a
//! request that must wait (a load, an open, a compression) gets a boxed
//! future (README, "Performance").

use crate::handler::{Scope, handle_later, handle_now};
use axum::handler::Handler;
use http::Request;
use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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
pub fn service(scope: Scope) -> CatchPanic<FileService, PanicTo500> {
    CatchPanicLayer::custom(PanicTo500).layer(FileService { scope: Arc::new(scope) })
}

/// The pipeline as a service: see the module doc.
#[derive(Debug, Clone)]
pub struct FileService {
    scope: Arc<Scope>,
}

impl<B> Service<Request<B>> for FileService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Reply {
        // The request body is never read (GET and HEAD): it is dropped here.
        let (parts, _body) = req.into_parts();
        match handle_now(&self.scope, parts) {
            Ok(response) => Reply::Now(ready(Ok(response))),
            Err(later) => Reply::Later(Box::pin(handle_later(Scope::clone(&self.scope), later))),
        }
    }
}

/// [`FileService`]'s future: ready at once, or the rest of the pipeline.
pub enum Reply {
    /// Answered inside `call`.
    Now(Ready<Result<axum::response::Response, Infallible>>),
    /// Waiting for a load, an open or a compression.
    Later(Pin<Box<dyn Future<Output = axum::response::Response> + Send>>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reply::Now(_) => "Reply::Now",
            Reply::Later(_) => "Reply::Later",
        })
    }
}

impl Future for Reply {
    type Output = Result<axum::response::Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Reply::Now(ready) => Pin::new(ready).poll(cx),
            Reply::Later(later) => later.as_mut().poll(cx).map(Ok),
        }
    }
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
