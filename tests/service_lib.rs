//! The application service driven in process over a real socket on
//! 127.0.0.1: a handler that panics becomes a 500 for that one request, and
//! the connection (and the process) carry on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "support/app.rs"]
mod support;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mapserve::body::FileBody;
use mapserve::handler::{Later, Scope, handle_now};
use std::io::{Read, Write};

/// The real pipeline, except that `/panic` panics.
fn panicky(scope: &Scope, req: http::request::Parts) -> Result<http::Response<FileBody>, Box<Later>> {
    if req.uri.path() == "/panic" {
        panic!("a bug in a handler");
    }
    handle_now(scope, req)
}

#[test]
fn a_handler_panic_is_a_500_and_the_connection_carries_on() {
    let dir = std::env::temp_dir().join(format!("mapserve-service-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("a.txt"), b"hello").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let app = support::app(&rt, &dir, Default::default());
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let service = mapserve::app::service_with(panicky, Scope::new(app, None));
        let per_conn =
            hyper::service::service_fn(move |req| tower::ServiceExt::oneshot(service.clone(), req));
        let _ =
            auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), per_conn).await;
    });
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    c.write_all(
        b"GET /panic HTTP/1.1\r\nHost: t\r\n\r\nGET /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 500 Internal Server Error\r\n"), "{text}");
    assert!(text.contains("\r\n\r\n500 internal server error\n"), "a plain body, no message: {text}");
    let second = text.find("HTTP/1.1 200 OK").expect("the next request on the connection is served");
    assert!(text[second..].ends_with("\r\n\r\nhello"), "{text}");
}
