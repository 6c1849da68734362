//! The file listeners' service: [`FileService`] runs the pipeline
//! (`handler`; every path and method reaches it, and 405 for unsupported
//! methods is decided there, with the right `Allow`), wrapped in tower-http's
//! `CatchPanicLayer`, which turns a bug that panics into a plain 500 for that
//! one request.
//!
//! Why no axum `Router` or handler here: the file listeners have exactly one
//! route, and most requests wait for nothing. A one-route `Router` measured
//! about 1 µs more per request than a handler service; a handler service
//! still boxes one future per request, moving the pipeline's whole state
//! into it, and boxes the response body. [`FileService`] runs the pipeline
//! inside `call` and answers a cached entry with a ready future; only a
//! request that must wait (a load, an open, a compression) gets a boxed
//! future (README, "Performance").

use crate::body::FileBody;
use crate::handler::{Later, Scope, handle_later, handle_now};
use http::request::Parts;
use http::{Request, Response};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower::Layer;
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

/// The pipeline a [`FileService`] runs: `handler::handle_now`, or in tests
/// one that panics.
pub type Pipeline = fn(&Scope, Parts) -> Result<Response<FileBody>, Box<Later>>;

/// Builds the service for one connection.
pub fn service(scope: Scope) -> CatchPanic<FileService, PanicTo500> {
    service_with(handle_now, scope)
}

/// The service around any pipeline: [`service`] with `handle_now`, and
/// tests with one that panics, to check that it becomes a 500.
pub fn service_with(pipeline: Pipeline, scope: Scope) -> CatchPanic<FileService, PanicTo500> {
    CatchPanicLayer::custom(PanicTo500).layer(FileService { scope: Arc::new(scope), pipeline })
}

/// The pipeline as a service: see the module doc.
#[derive(Debug, Clone)]
pub struct FileService {
    scope: Arc<Scope>,
    pipeline: Pipeline,
}

impl<B> tower::Service<Request<B>> for FileService {
    type Response = Response<FileBody>;
    type Error = Infallible;
    type Future = Reply;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Reply {
        // The request body is never read (GET and HEAD): it is dropped here.
        let (parts, _body) = req.into_parts();
        match (self.pipeline)(&self.scope, parts) {
            Ok(response) => Reply::Now(Some(response)),
            Err(later) => Reply::Later(Box::pin(handle_later(Scope::clone(&self.scope), later))),
        }
    }
}

/// [`FileService`]'s future: ready at once, or the rest of the pipeline.
// The large variant is the hit's: boxing it would cost an allocation a hit.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// Answered inside `call` (`None` once taken).
    Now(Option<Response<FileBody>>),
    /// Waiting for a load, an open or a compression.
    Later(Pin<Box<dyn Future<Output = Response<FileBody>> + Send>>),
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
    type Output = Result<Response<FileBody>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            // Taken once; hyper never polls a finished future again, and if
            // something did, it would wait forever rather than panic.
            Reply::Now(response) => response.take().map_or(Poll::Pending, |r| Poll::Ready(Ok(r))),
            Reply::Later(later) => later.as_mut().poll(cx).map(Ok),
        }
    }
}
