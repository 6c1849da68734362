//! The whole service on arbitrary request bytes: hyper's HTTP/1 and HTTP/2
//! parsers, the handler, the cache and the response builder, in process
//! over an in-memory stream, on a small fixture tree. Whatever arrives: no
//! panic, no 500, no path of the server's in any response, and every
//! response head well formed.
#![no_main]

#[path = "../../tests/support/app.rs"]
mod support;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use libfuzzer_sys::fuzz_target;
use mapserve::handler::{App, Scope};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    rt: tokio::runtime::Runtime,
    app: Arc<App>,
    root: String,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let root = std::env::temp_dir().join(format!("mapserve-fuzz-service-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("sub/deeper")).unwrap();
        std::fs::write(root.join("index.html"), b"<h1>hi</h1>").unwrap();
        std::fs::write(root.join("a.txt"), b"hello").unwrap();
        std::fs::write(root.join("empty"), b"").unwrap();
        std::fs::write(root.join(".secret"), b"dot").unwrap();
        std::fs::write(root.join("sub/b.json"), b"{}").unwrap();
        std::fs::write(root.join("big.bin"), (0..300_000u32).map(|i| i as u8).collect::<Vec<_>>()).unwrap();
        std::fs::write(root.join("huge.bin"), (0..3_000_000u32).map(|i| (i / 7) as u8).collect::<Vec<_>>()).unwrap();
        let _ = std::os::unix::fs::symlink("/etc/passwd", root.join("escape"));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let app = support::app(
            &rt,
            &root,
            mapserve::handler::Browse {
                listing: Some(mapserve::cache::ListingRules { hidden: false, max_entries: 50 }),
                not_found_page: None,
                fallback: None,
            },
        );
        World { rt, app, root: root.display().to_string() }
    })
}

fuzz_target!(|input: &[u8]| {
    let w = world();
    let out = w.rt.block_on(async {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let service = mapserve::app::service(Scope::new(w.app.clone(), None));
        let per_conn = hyper::service::service_fn(move |req| tower_oneshot(service.clone(), req));
        let conn = tokio::spawn(async move {
            let builder = auto::Builder::new(TokioExecutor::new());
            let _ = builder.serve_connection(TokioIo::new(server), per_conn).await;
        });
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(2), client.read_to_end(&mut out)).await;
        conn.abort();
        out
    });
    assert!(!out.windows(w.root.len()).any(|win| win == w.root.as_bytes()), "a server path leaked");
    // HTTP/1 responses: every status line is well formed and never a 500.
    let mut at = 0;
    while let Some(pos) = out[at..].windows(9).position(|x| x == b"HTTP/1.1 " || x == b"HTTP/1.0 ") {
        let line_start = at + pos;
        let status = &out[line_start + 9..(line_start + 12).min(out.len())];
        assert_ne!(status, b"500", "a 500 for {:?}", String::from_utf8_lossy(input));
        at = line_start + 9;
    }
});

async fn tower_oneshot<S, R>(service: S, req: R) -> Result<S::Response, S::Error>
where
    S: tower_service::Service<R>,
{
    let mut service = service;
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(req).await
}
