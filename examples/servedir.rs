//! Bench tooling: the stock Rust choice for serving a directory, axum with
//! tower-http's `ServeDir`, kept only so that the benchmark can run it side by
//! side with mapserve, nginx and lighttpd.
//!
//! ```text
//! cargo run --release --example servedir -- ROOT ADDR
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use tower_http::services::ServeDir;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().unwrap_or_else(|| ".".into());
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let app = axum::Router::new().fallback_service(ServeDir::new(root));
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    eprintln!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}
